#version 330 core
// Turns the supersampled atlas into a stack of final images, one per scene, in readback order:
// output row y holds row (y % res) from the top of scene (y / res), so one glReadPixels of the stack
// is already an (N, H, W, C) array. RGB is the box average of each s x s block (anti-aliasing); depth
// and ids are copied from ONE sample of the block, never blended, so they stay exact.

uniform sampler2D u_colour;
uniform sampler2D u_depth;
uniform usampler2D u_instance;
uniform usampler2D u_semantic;
uniform int u_res;        // final image side, pixels
uniform int u_ss;         // supersampling factor s
uniform int u_tiles_x;    // atlas tiles per row
uniform int u_label_sub;  // which sub-sample (column, and row from the top) carries the labels

layout(location = 0) out vec4 f_colour;
layout(location = 1) out float f_depth;
layout(location = 2) out uint f_instance;
layout(location = 3) out uint f_semantic;

void main() {
    ivec2 o = ivec2(gl_FragCoord.xy);
    int scene = o.y / u_res;
    int row = o.y - scene * u_res;  // from the top
    int tile = u_res * u_ss;
    ivec2 corner = ivec2((scene % u_tiles_x) * tile, (scene / u_tiles_x) * tile);
    // GL rows count from the bottom: top-down sub-row r of the tile is GL row tile - 1 - r.
    int top = (row + 1) * u_ss;  // one past the block's last top-down sub-row
    ivec2 block = corner + ivec2(o.x * u_ss, tile - top);
    vec3 sum = vec3(0.0);
    for (int j = 0; j < u_ss; ++j)
        for (int i = 0; i < u_ss; ++i)
            sum += texelFetch(u_colour, block + ivec2(i, j), 0).rgb;
    f_colour = vec4(sum / float(u_ss * u_ss), 1.0);
    ivec2 label = block + ivec2(u_label_sub, u_ss - 1 - u_label_sub);
    f_depth = texelFetch(u_depth, label, 0).r;
    f_instance = texelFetch(u_instance, label, 0).r;
    f_semantic = texelFetch(u_semantic, label, 0).r;
}
