// (the renderer prepends "#version 330 core" and patterns.glsl)
// Shades one fragment and writes all of its labels through multiple render targets:
// 0 colour (display RGB), 1 linear depth (metres along the viewing axis), 2 instance id, 3 semantic id.

uniform vec3 u_eye;       // camera position, world
uniform vec3 u_fill;      // unit direction toward the weak fill light (behind the camera)

in vec3 v_world;
in vec3 v_normal;
in vec3 v_texcoord;
in float v_depth;
flat in vec4 v_colour_a;
flat in vec4 v_colour_b;
flat in vec3 v_tint;
flat in vec3 v_light;
flat in uvec2 v_ids;

layout(location = 0) out vec4 f_colour;
layout(location = 1) out float f_depth;
layout(location = 2) out uint f_instance;
layout(location = 3) out uint f_semantic;

const float AMBIENT = 0.06;
const float FILL = 0.30;
const float POINT = 1.6;      // point light strength at its reference distance
const float REACH = 1.5;      // reference distance, metres (the light's distance from the origin)
const float SPECULAR = 0.25;
const float SHININESS = 40.0;

void main() {
    int kind = int(v_colour_b.w + 0.5);
    vec3 albedo = v_colour_a.rgb;
    if (kind > 0) albedo = mix(v_colour_a.rgb, v_colour_b.rgb, pattern(kind, v_texcoord));
    albedo = mix(albedo, v_tint, v_colour_a.w);
    vec3 base = pow(albedo, vec3(2.2));  // colours are chosen in display space, light adds linearly

    vec3 to_eye = normalize(u_eye - v_world);
    vec3 n = normalize(v_normal);
    if (dot(n, to_eye) < 0.0) n = -n;  // meshes need not be closed or consistently wound
    vec3 to_light = v_light - v_world;
    float dist2 = dot(to_light, to_light);
    vec3 l = to_light * inversesqrt(dist2);
    float falloff = min(1.0, REACH * REACH / dist2);
    float diffuse = max(dot(n, l), 0.0);
    float highlight = diffuse > 0.0 ? pow(max(dot(n, normalize(l + to_eye)), 0.0), SHININESS) : 0.0;

    vec3 radiance = base * (AMBIENT + FILL * max(dot(n, u_fill), 0.0) + POINT * falloff * diffuse)
                  + SPECULAR * falloff * highlight;
    f_colour = vec4(pow(clamp(radiance, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    f_depth = v_depth;
    f_instance = v_ids.x;
    f_semantic = v_ids.y;
}
