// Procedural surface patterns, evaluated per fragment in the surface's own frame (no UVs).
// Each pattern maps a texture coordinate q (already rotated, scaled to about one feature per unit and
// offset by the caller) to a mixing weight t in [0, 1] between a material's two colours.
// KIND (a #define): 0 flat, 1 noise (fbm), 2 stripes, 3 checks, 4 cells (Voronoi), 5 marble, 6 dots.
// Costs matter on a software rasteriser: a cheap integer hash and at most 3 octaves of value noise.

float hash13(ivec3 c) {
    uint h = (uint(c.x) * 0x8da6b343u) ^ (uint(c.y) * 0xd8163841u) ^ (uint(c.z) * 0xcb1ab31fu);
    h ^= h >> 15u;
    h *= 0x2c1b3c6du;
    h ^= h >> 12u;
    return float(h >> 8u) * (1.0 / 16777216.0);
}

vec3 hash33(ivec3 c) {
    return vec3(hash13(c), hash13(c + ivec3(17, 59, 113)), hash13(c + ivec3(211, 7, 37)));
}

float value_noise(vec3 p) {
    vec3 i = floor(p);
    vec3 f = p - i;
    vec3 u = f * f * (3.0 - 2.0 * f);
    ivec3 c = ivec3(i);
    float x00 = mix(hash13(c), hash13(c + ivec3(1, 0, 0)), u.x);
    float x10 = mix(hash13(c + ivec3(0, 1, 0)), hash13(c + ivec3(1, 1, 0)), u.x);
    float x01 = mix(hash13(c + ivec3(0, 0, 1)), hash13(c + ivec3(1, 0, 1)), u.x);
    float x11 = mix(hash13(c + ivec3(0, 1, 1)), hash13(c + ivec3(1, 1, 1)), u.x);
    return mix(mix(x00, x10, u.y), mix(x01, x11, u.y), u.z);
}

float fbm(vec3 p) {
    // Rotating between octaves hides the lattice; weights 1, 1/2, 1/4 normalised to [0, 1].
    const mat3 turn = mat3(0.00, 0.80, 0.60, -0.80, 0.36, -0.48, -0.60, -0.48, 0.64);
    float v = value_noise(p);
    p = turn * p * 2.03;
    v += 0.5 * value_noise(p);
    p = turn * p * 2.01;
    v += 0.25 * value_noise(p);
    return v * (1.0 / 1.75);
}

float cells(vec3 p) {
    // Voronoi over the 2x2x2 lattice cells nearest to p (a cheap approximation of the 27-cell search);
    // the winning cell's random value is the weight, darkened along cell borders.
    ivec3 base = ivec3(floor(p - 0.5));
    float d1 = 1e9, d2 = 1e9;
    float id = 0.0;
    for (int k = 0; k < 8; ++k) {
        ivec3 c = base + ivec3(k & 1, (k >> 1) & 1, (k >> 2) & 1);
        vec3 r = vec3(c) + hash33(c) - p;
        float d = dot(r, r);
        if (d < d1) { d2 = d1; d1 = d; id = hash13(c + ivec3(91, 23, 5)); }
        else if (d < d2) { d2 = d; }
    }
    float border = smoothstep(0.0, 0.12, sqrt(d2) - sqrt(d1));
    return id * border;
}

// The kind is a compile-time constant (the renderer builds one program per kind and sorts draws by
// kind): a software rasteriser runs both sides of a data-dependent branch, so an "uber-shader" would
// pay for every pattern on every fragment.
float pattern(vec3 q) {
#if KIND == 1
    return smoothstep(0.25, 0.75, fbm(q));
#elif KIND == 2
    return smoothstep(-0.25, 0.25, sin(6.2831853 * q.x));
#elif KIND == 3
    ivec3 c = ivec3(floor(q));
    return float((c.x + c.y + c.z) & 1);
#elif KIND == 4
    return cells(q);
#elif KIND == 5
    return 0.5 + 0.5 * sin(6.2831853 * q.x + 5.0 * fbm(0.7 * q));
#elif KIND == 6
    vec3 f = fract(q) - 0.5;
    return 1.0 - smoothstep(0.26, 0.34, length(f));
#else
    return 0.0;
#endif
}
