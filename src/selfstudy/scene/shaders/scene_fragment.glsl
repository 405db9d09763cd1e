// (the renderer prepends "#version 330 core", "#define KIND k" and patterns.glsl)
// Shades one fragment. One render target, RGBA8: display RGB, and in alpha the fragment's packed ids
// (instance * 16 + semantic, over 255: stored exactly). Depth comes from the depth buffer.

uniform vec3 u_eye;       // camera position, world
uniform vec3 u_fill;      // unit direction toward the weak fill light (behind the camera)

in vec3 v_world;
in vec3 v_normal;
in vec3 v_texcoord;
flat in vec3 v_colour_a;
flat in vec3 v_colour_b;
flat in vec3 v_light;
flat in float v_ids;

out vec4 f_colour;

const float AMBIENT = 0.06;
const float FILL = 0.30;
const float POINT = 1.6;      // point light strength at its reference distance
const float REACH = 1.5;      // reference distance, metres (the light's distance from the origin)
const float SPECULAR = 0.25;  // Blinn-Phong, exponent 40

void main() {
#if KIND == 0
    vec3 base = v_colour_a;
#else
    vec3 base = mix(v_colour_a, v_colour_b, pattern(v_texcoord));
#endif
    vec3 to_eye = normalize(u_eye - v_world);
    vec3 n = normalize(v_normal);
    if (dot(n, to_eye) < 0.0) n = -n;  // meshes need not be closed or consistently wound
    vec3 to_light = v_light - v_world;
    float dist2 = dot(to_light, to_light);
    vec3 l = to_light * inversesqrt(dist2);
    float falloff = min(1.0, REACH * REACH / dist2);
    float diffuse = max(dot(n, l), 0.0);
    float h = max(dot(n, normalize(l + to_eye)), 0.0);
    float h8 = h * h; h8 *= h8; h8 *= h8;
    float h32 = h8 * h8; h32 *= h32;
    float highlight = diffuse > 0.0 ? h32 * h8 : 0.0;

    vec3 radiance = base * (AMBIENT + FILL * max(dot(n, u_fill), 0.0) + POINT * falloff * diffuse)
                  + SPECULAR * falloff * highlight;
    // Colours are linear (squared display values); gamma 2 back to display.
    f_colour = vec4(sqrt(clamp(radiance, 0.0, 1.0)), v_ids);
}
