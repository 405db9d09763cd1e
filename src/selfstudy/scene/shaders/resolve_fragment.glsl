// (the renderer prepends "#version 330 core" and "#define SS s", the supersampling factor)
// Turns the supersampled atlas into a stack of final images, one per scene, in readback order:
// output row y holds row (y % res) from the top of scene (y / res), so one glReadPixels of the stack
// is already an (N, H, W, C) array. RGB is the box average of each s x s block (anti-aliasing); depth
// and ids are read from ONE sample of the block, never blended, so they stay exact.

uniform sampler2D u_colour;  // rgb, a = (instance * 16 + semantic) / 255
uniform sampler2D u_depth;   // the depth buffer, window z in [0, 1]
uniform int u_res;           // final image side, pixels
uniform int u_tiles_x;       // atlas tiles per row
const int LABEL = SS / 2;   // the sub-sample (column, and row from the top) that carries the labels
uniform vec2 u_near_far;     // clip planes, metres

layout(location = 0) out vec4 f_colour;
layout(location = 1) out float f_depth;
layout(location = 2) out uint f_instance;
layout(location = 3) out uint f_semantic;

void main() {
    // Integer division is scalarised on a SIMD software rasteriser; these floats are exact (< 2^24).
    vec2 o = floor(gl_FragCoord.xy);
    float scene = floor((o.y + 0.5) / float(u_res));
    float row = o.y - scene * float(u_res);  // from the top
    float tile_y = floor((scene + 0.5) / float(u_tiles_x));
    float tile_x = scene - tile_y * float(u_tiles_x);
    float tile = float(u_res * SS);
    // GL rows count from the bottom: top-down sub-row r of the tile is GL row tile - 1 - r.
    ivec2 block = ivec2(tile * tile_x + o.x * float(SS), tile * tile_y + tile - (row + 1.0) * float(SS));
    // Box average by single-texel fetches (cheaper than one bilinear fetch on llvmpipe); the label
    // sample is one of them, so its label_ids ids come for free.
    ivec2 label = block + ivec2(LABEL, SS - 1 - LABEL);
    vec3 rgb = vec3(0.0);
    float label_ids = 0.0;
    for (int j = 0; j < SS; ++j) {
        for (int i = 0; i < SS; ++i) {
            vec4 texel = texelFetch(u_colour, block + ivec2(i, j), 0);
            rgb += texel.rgb;
            if (i == LABEL && j == SS - 1 - LABEL) label_ids = texel.a;
        }
    }
    f_colour = vec4(rgb / float(SS * SS), 1.0);
    uint ids = uint(label_ids * 255.0 + 0.5);
    f_instance = ids >> 4u;
    f_semantic = ids & 15u;
    // Window z -> NDC z -> metres along the viewing axis (the inverse of the projection).
    float z = 2.0 * texelFetch(u_depth, label, 0).r - 1.0;
    float n = u_near_far.x, f = u_near_far.y;
    f_depth = 2.0 * n * f / (f + n - z * (f - n));
}
