#version 330 core
// One vertex of a scene mesh. Every draw of a batch is one (mesh, record) pair: the per-draw record
// arrives as instanced attributes (the draw's base instance selects it), so a whole batch of scenes is
// one multi-draw call per pattern kind. Each scene is rendered into its own tile of a large atlas;
// clip distances cut each triangle to its tile's frustum so that nothing spills into a neighbour.

uniform mat4 u_view;        // world -> camera
uniform mat4 u_projection;  // camera -> clip
uniform vec2 u_tiles;       // atlas tiles along x and y

in vec3 in_position;  // object frame (unit-size mesh)
in vec3 in_normal;

in vec4 i_model0;     // rows of the object-to-world affine map (rotation @ diag(scale) | translation)
in vec4 i_model1;
in vec4 i_model2;
in vec4 i_normal0;    // rows of the normal matrix (xyz) | light position (w of the three rows)
in vec4 i_normal1;
in vec4 i_normal2;
in vec4 i_texture0;   // rows of the object -> pattern-space affine map
in vec4 i_texture1;
in vec4 i_texture2;
in vec4 i_colour_a;   // linear rgb | tile x
in vec4 i_colour_b;   // linear rgb | tile y
in vec4 i_ids;        // packed ids / 255 (instance * 16 + semantic), unused

out vec3 v_world;
out vec3 v_normal;
out vec3 v_texcoord;
flat out vec3 v_colour_a;
flat out vec3 v_colour_b;
flat out vec3 v_light;
flat out float v_ids;

out float gl_ClipDistance[4];

void main() {
    vec4 p = vec4(in_position, 1.0);
    v_world = vec3(dot(i_model0, p), dot(i_model1, p), dot(i_model2, p));
    v_normal = vec3(dot(i_normal0.xyz, in_normal), dot(i_normal1.xyz, in_normal), dot(i_normal2.xyz, in_normal));
    v_texcoord = vec3(dot(i_texture0, p), dot(i_texture1, p), dot(i_texture2, p));
    v_colour_a = i_colour_a.rgb;
    v_colour_b = i_colour_b.rgb;
    v_light = vec3(i_normal0.w, i_normal1.w, i_normal2.w);
    v_ids = i_ids.x;

    vec4 clip = u_projection * (u_view * vec4(v_world, 1.0));
    gl_ClipDistance[0] = clip.w + clip.x;
    gl_ClipDistance[1] = clip.w - clip.x;
    gl_ClipDistance[2] = clip.w + clip.y;
    gl_ClipDistance[3] = clip.w - clip.y;
    // Tile (tx, ty) of an atlas of (nx, ny) tiles: NDC x -> (x + 2 tx + 1 - nx) / nx.
    vec2 tile = vec2(i_colour_a.w, i_colour_b.w);
    clip.xy = (clip.xy + clip.w * (2.0 * tile + 1.0 - u_tiles)) / u_tiles;
    gl_Position = clip;
}
