// V16: sixteen floats, the unit every float32 kernel is written in, for three instruction sets.
//
// This header is included several times into one program, once per instruction set, each time
// inside its own namespace and after a `#pragma GCC target` that enables that set (see
// gemm.cpp, conv_*.cpp, kernels.cpp). The macro picks the build:
//   DL_SIMD_AVX512   V16 is one __m512 (32 registers; masks for partial vectors)
//   DL_SIMD_AVX2     V16 is two __m256 (16 registers in all, so kernels use smaller tiles)
//   neither          V16 is float[16] with plain loops, which the compiler vectorizes as it can
// There is deliberately no include guard. Include <immintrin.h> and the standard headers before
// the target pragma, so that no standard-library function is compiled for a wider target.
//
// kAccRegs is how many V16 accumulators a kernel may keep live (registers minus operands).

#if defined(DL_SIMD_AVX512)

constexpr int kAccRegs = 28;
struct V16 { __m512 v; };
inline V16 vzero() { return {_mm512_setzero_ps()}; }
inline V16 vset(float x) { return {_mm512_set1_ps(x)}; }
inline V16 vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void vstore(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline __mmask16 lanes_mask(int n) { return __mmask16((1u << n) - 1u); }  // 0 <= n <= 16
// The first n lanes (0 <= n <= 16); the others read as zero and are not written.
inline V16 vload_n(const float* p, int n) { return {_mm512_maskz_loadu_ps(lanes_mask(n), p)}; }
inline void vstore_n(float* p, V16 a, int n) { _mm512_mask_storeu_ps(p, lanes_mask(n), a.v); }
// Lanes [lo, hi) of a vector; loads through a mask read only those lanes (p may point outside them).
struct VMask { __mmask16 m; };
inline VMask vmask_range(int lo, int hi) { return {__mmask16(lanes_mask(hi) & ~lanes_mask(lo))}; }
inline V16 vload_mask(const float* p, VMask m) { return {_mm512_maskz_loadu_ps(m.m, p)}; }
// The first n lanes from p, the others `fill`; and v with lanes from n on zeroed.
inline V16 vload_n_or(const float* p, int n, float fill) { return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes_mask(n), p)}; }
inline V16 vkeep_n(V16 v, int n) { return {_mm512_maskz_mov_ps(lanes_mask(n), v.v)}; }
inline V16 vfma(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a*b + c
// Pin a value in a register: GCC otherwise folds a vector used by several FMAs into each of them as
// a memory operand, one load per use.
inline void vreg(V16& a) { asm("" : "+v"(a.v)); }
inline V16 vadd(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V16 vsub(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V16 vmul(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V16 vdiv(V16 a, V16 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline V16 vmax(V16 a, V16 b) { return {_mm512_mask_max_ps(a.v, 0xFFFF, a.v, b.v)}; }  // mask forms: see vtranspose
inline V16 vmin(V16 a, V16 b) { return {_mm512_mask_min_ps(a.v, 0xFFFF, a.v, b.v)}; }
// t where a < b, else f
inline V16 vwhere_lt(V16 a, V16 b, V16 t, V16 f) { return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), f.v, t.v)}; }
// Horizontal sum and max by swapping 256-bit halves, 128-bit lanes, 64-bit pairs, then neighbours
// (all-ones-mask forms: GCC 12's unmasked extract/shuffle intrinsics trip -Wmaybe-uninitialized).
inline __m512 vswap256(__m512 a) { return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, a, 0x4E); }
inline __m512 vswap128(__m512 a) { return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, a, 0xB1); }
inline __m512 vswap64(__m512 a) { return _mm512_mask_permute_ps(a, 0xFFFF, a, 0x4E); }
inline __m512 vswap32(__m512 a) { return _mm512_mask_permute_ps(a, 0xFFFF, a, 0xB1); }
inline float vsum(V16 a) {
    __m512 x = _mm512_add_ps(a.v, vswap256(a.v));
    x = _mm512_add_ps(x, vswap128(x));
    x = _mm512_add_ps(x, vswap64(x));
    return _mm512_cvtss_f32(_mm512_add_ps(x, vswap32(x)));
}
inline float vhmax(V16 a) {
    __m512 x = _mm512_mask_max_ps(a.v, 0xFFFF, a.v, vswap256(a.v));
    x = _mm512_mask_max_ps(x, 0xFFFF, x, vswap128(x));
    x = _mm512_mask_max_ps(x, 0xFFFF, x, vswap64(x));
    return _mm512_cvtss_f32(_mm512_mask_max_ps(x, 0xFFFF, x, vswap32(x)));
}
// The float whose bits are a's shifted left by 23 (vexp's 2^n).
inline V16 vbits_shl23(V16 a) {
    const __m512i b = _mm512_castps_si512(a.v);
    return {_mm512_castsi512_ps(_mm512_mask_slli_epi32(b, 0xFFFF, b, 23))};
}

// lo lane 2j = v[j], hi lane 2j = v[8 + j] (j < 8), odd lanes zero: v spread over every other float.
inline void vspread2(V16 v, V16& lo, V16& hi) {
    const __m512i i0 = _mm512_setr_epi32(0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0);
    const __m512i i1 = _mm512_setr_epi32(8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15, 0);
    lo.v = _mm512_maskz_permutexvar_ps(0x5555, i0, v.v);
    hi.v = _mm512_maskz_permutexvar_ps(0x5555, i1, v.v);
}
// lo lanes 2j, 2j+1 = a[j], b[j]; hi lanes 2j, 2j+1 = a[8 + j], b[8 + j]: a and b interleaved.
inline void vinterleave(V16 a, V16 b, V16& lo, V16& hi) {
    const __m512i i0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    lo.v = _mm512_permutex2var_ps(a.v, i0, b.v);
    hi.v = _mm512_permutex2var_ps(a.v, i1, b.v);
}
// lo lanes 2j, 2j+1 = v[j], hi lanes 2j, 2j+1 = v[8 + j]: each value twice (nearest 2x upsampling).
inline void vdup2(V16 v, V16& lo, V16& hi) {
    const __m512i i0 = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i i1 = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    lo.v = _mm512_mask_permutexvar_ps(v.v, 0xFFFF, i0, v.v);
    hi.v = _mm512_mask_permutexvar_ps(v.v, 0xFFFF, i1, v.v);
}
// lane j = a[2j] + a[2j+1] for j < 8, b[2j - 16] + b[2j - 15] for j >= 8: sums of neighbouring pairs.
inline V16 vpairsum(V16 a, V16 b) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return {_mm512_add_ps(_mm512_permutex2var_ps(a.v, ev, b.v), _mm512_permutex2var_ps(a.v, od, b.v))};
}
// 1/a to about 1e-7 relative: the 14-bit estimate and one Newton step, instead of a divide.
inline V16 vrcp(V16 a) {
    const __m512 r = _mm512_mask_rcp14_ps(a.v, 0xFFFF, a.v);
    return {_mm512_mul_ps(r, _mm512_fnmadd_ps(a.v, r, _mm512_set1_ps(2.f)))};
}

// In-place 16x16 transpose: r[i] lane j <-> r[j] lane i. Three shuffle stages: 32-bit
// interleave, 64-bit interleave, then two rounds of 128-bit lane selection. (The all-ones-mask
// forms compile to the plain instructions; GCC 12's unmasked intrinsics trip -Wmaybe-uninitialized.)
inline __m512 unpacklo32(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi32(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
inline __m512 unpacklo64(__m512 a, __m512 b) {
    __m512d x = _mm512_castps_pd(a);
    return _mm512_castpd_ps(_mm512_mask_unpacklo_pd(x, 0xFF, x, _mm512_castps_pd(b)));
}
inline __m512 unpackhi64(__m512 a, __m512 b) {
    __m512d x = _mm512_castps_pd(a);
    return _mm512_castpd_ps(_mm512_mask_unpackhi_pd(x, 0xFF, x, _mm512_castps_pd(b)));
}
template <int IMM> inline __m512 shuffle128(__m512 a, __m512 b) { return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, IMM); }

inline void vtranspose(V16 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) t[i] = unpacklo32(r[i].v, r[i + 1].v), t[i + 1] = unpackhi32(r[i].v, r[i + 1].v);
    // u[4g+m], 128-bit lane k = rows 4g..4g+3 at column 4k+m
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = unpacklo64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = unpackhi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = unpacklo64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = unpackhi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int m = 0; m < 4; m++) {
        __m512 v02 = shuffle128<0x88>(u[m], u[4 + m]), v13 = shuffle128<0xDD>(u[m], u[4 + m]);
        __m512 w02 = shuffle128<0x88>(u[8 + m], u[12 + m]), w13 = shuffle128<0xDD>(u[8 + m], u[12 + m]);
        r[m].v = shuffle128<0x88>(v02, w02);
        r[8 + m].v = shuffle128<0xDD>(v02, w02);
        r[4 + m].v = shuffle128<0x88>(v13, w13);
        r[12 + m].v = shuffle128<0xDD>(v13, w13);
    }
}

#elif defined(DL_SIMD_AVX2)

constexpr int kAccRegs = 6;  // 12 of the 16 ymm registers
struct V16 { __m256 lo, hi; };
inline V16 vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V16 vset(float x) { __m256 s = _mm256_set1_ps(x); return {s, s}; }
inline V16 vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void vstore(float* p, V16 a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
inline __m256i lanes_mask8(int n) {  // lanes < n all-ones, n clamped to [0, 8]
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V16 vload_n(const float* p, int n) {
    if (n >= 16) return vload(p);
    return {_mm256_maskload_ps(p, lanes_mask8(n)), _mm256_maskload_ps(p + 8, lanes_mask8(n - 8))};
}
// The first n (<= 8) lanes of v to p. VMASKMOVPS stores are slow on AMD: on a Zen 3 EPYC,
// a loop of independent stores took 4 ns per full ymm against 0.4 for
// VMOVUPS, 5-7 ns per partial one against 2 for the 16-, 8- and 4-byte stores used here.
inline void store8_n(float* p, __m256 v, int n) {
    if (n >= 8) return _mm256_storeu_ps(p, v);
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, x);
        x = _mm256_extractf128_ps(v, 1), p += 4, n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
        x = _mm_movehl_ps(x, x), p += 2, n -= 2;
    }
    if (n >= 1) _mm_store_ss(p, x);
}
inline void vstore_n(float* p, V16 a, int n) {
    if (n >= 16) return vstore(p, a);
    if (n >= 8) return _mm256_storeu_ps(p, a.lo), store8_n(p + 8, a.hi, n - 8);
    store8_n(p, a.lo, n);
}
struct VMask { __m256i lo, hi; };
inline VMask vmask_range(int lo, int hi) {
    return {_mm256_andnot_si256(lanes_mask8(lo), lanes_mask8(hi)), _mm256_andnot_si256(lanes_mask8(lo - 8), lanes_mask8(hi - 8))};
}
inline V16 vload_mask(const float* p, VMask m) { return {_mm256_maskload_ps(p, m.lo), _mm256_maskload_ps(p + 8, m.hi)}; }
inline V16 vload_n_or(const float* p, int n, float fill) {
    const __m256i m0 = lanes_mask8(n), m1 = lanes_mask8(n - 8);
    const __m256 f = _mm256_set1_ps(fill);
    return {_mm256_blendv_ps(f, _mm256_maskload_ps(p, m0), _mm256_castsi256_ps(m0)),
            _mm256_blendv_ps(f, _mm256_maskload_ps(p + 8, m1), _mm256_castsi256_ps(m1))};
}
inline V16 vkeep_n(V16 v, int n) {
    return {_mm256_and_ps(v.lo, _mm256_castsi256_ps(lanes_mask8(n))), _mm256_and_ps(v.hi, _mm256_castsi256_ps(lanes_mask8(n - 8)))};
}
inline V16 vfma(V16 a, V16 b, V16 c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
inline void vreg(V16& a) { asm("" : "+x"(a.lo), "+x"(a.hi)); }
inline V16 vadd(V16 a, V16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline V16 vsub(V16 a, V16 b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
inline V16 vmul(V16 a, V16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline V16 vdiv(V16 a, V16 b) { return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)}; }
inline V16 vmax(V16 a, V16 b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
inline V16 vmin(V16 a, V16 b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }
inline V16 vwhere_lt(V16 a, V16 b, V16 t, V16 f) {
    return {_mm256_blendv_ps(f.lo, t.lo, _mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ)), _mm256_blendv_ps(f.hi, t.hi, _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ))};
}
inline float hsum8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline float vsum(V16 a) { return hsum8(_mm256_add_ps(a.lo, a.hi)); }
inline float vhmax(V16 a) {
    __m256 m = _mm256_max_ps(a.lo, a.hi);
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline __m256 shl23_bits8(__m256 a) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a), 23)); }
inline V16 vbits_shl23(V16 a) { return {shl23_bits8(a.lo), shl23_bits8(a.hi)}; }

inline void vinterleave(V16 x, V16 y, V16& lo, V16& hi) {
    const __m256 a = _mm256_unpacklo_ps(x.lo, y.lo), b = _mm256_unpackhi_ps(x.lo, y.lo);  // [x0 y0 x1 y1 | x4 y4 x5 y5], ...
    const __m256 c = _mm256_unpacklo_ps(x.hi, y.hi), d = _mm256_unpackhi_ps(x.hi, y.hi);
    lo = {_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)};
    hi = {_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31)};
}
inline void vdup2(V16 v, V16& lo, V16& hi) {
    const __m256 a = _mm256_unpacklo_ps(v.lo, v.lo), b = _mm256_unpackhi_ps(v.lo, v.lo);  // [v0 v0 v1 v1 | v4 v4 v5 v5], ...
    const __m256 c = _mm256_unpacklo_ps(v.hi, v.hi), d = _mm256_unpackhi_ps(v.hi, v.hi);
    lo = {_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)};
    hi = {_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31)};
}
inline __m256 pairsum8(__m256 a, __m256 b) {  // [a0+a1, a2+a3, a4+a5, a6+a7, b0+b1, ...]
    const __m256 h = _mm256_hadd_ps(a, b);  // [a01 a23 b01 b23 | a45 a67 b45 b67]
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), 0xD8));
}
inline V16 vpairsum(V16 a, V16 b) { return {pairsum8(a.lo, a.hi), pairsum8(b.lo, b.hi)}; }
inline __m256 rcp8(__m256 a) {
    const __m256 r = _mm256_rcp_ps(a);  // 12-bit estimate; one Newton step gives about 23 bits
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(2.f)));
}
inline V16 vrcp(V16 a) { return {rcp8(a.lo), rcp8(a.hi)}; }
inline void vspread2(V16 v, V16& lo, V16& hi) {
    const __m256 z = _mm256_setzero_ps();
    const __m256 a = _mm256_unpacklo_ps(v.lo, z), b = _mm256_unpackhi_ps(v.lo, z);  // [v0 0 v1 0 | v4 0 v5 0], [v2 0 v3 0 | v6 0 v7 0]
    const __m256 c = _mm256_unpacklo_ps(v.hi, z), d = _mm256_unpackhi_ps(v.hi, z);
    lo = {_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)};
    hi = {_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31)};
}

inline void transpose8(__m256 r[8]) {  // in-place 8x8
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        __m256 a = t[4 * g], b = t[4 * g + 1], c = t[4 * g + 2], d = t[4 * g + 3];
        u[4 * g + 0] = _mm256_shuffle_ps(a, c, 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(a, c, 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(b, d, 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(b, d, 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
}
// In-place 16x16 transpose as four 8x8 blocks: [A B; C D]^T = [A^T C^T; B^T D^T].
inline void vtranspose(V16 r[16]) {
    __m256 a[8], b[8], c[8], d[8];
    for (int i = 0; i < 8; i++) a[i] = r[i].lo, b[i] = r[i].hi, c[i] = r[8 + i].lo, d[i] = r[8 + i].hi;
    transpose8(a), transpose8(b), transpose8(c), transpose8(d);
    for (int i = 0; i < 8; i++) r[i] = {a[i], c[i]}, r[8 + i] = {b[i], d[i]};
}

#else  // portable: GCC/Clang vector extensions, lowered to whatever vectors the target has (SSE2, NEON, ...)

constexpr int kAccRegs = 4;
typedef float F16 __attribute__((vector_size(64)));
typedef int32_t I16 __attribute__((vector_size(64)));
typedef uint32_t U16 __attribute__((vector_size(64)));
struct V16 { F16 v; };
inline V16 vzero() { return {F16{} }; }
inline V16 vset(float x) { return {F16{} + x}; }
inline V16 vload(const float* p) { V16 r; std::memcpy(&r.v, p, 64); return r; }
inline void vstore(float* p, V16 a) { std::memcpy(p, &a.v, 64); }
inline V16 vload_n(const float* p, int n) {
    if (n >= 16) return vload(p);
    V16 r = vzero();
    for (int i = 0; i < n; i++) r.v[i] = p[i];
    return r;
}
inline void vstore_n(float* p, V16 a, int n) {
    if (n >= 16) return vstore(p, a);
    for (int i = 0; i < n; i++) p[i] = a.v[i];
}
struct VMask { int lo, hi; };
inline VMask vmask_range(int lo, int hi) { return {lo, hi}; }
inline V16 vload_mask(const float* p, VMask m) {
    if (m.lo <= 0 && m.hi >= 16) return vload(p);
    V16 r = vzero();
    for (int i = m.lo < 0 ? 0 : m.lo; i < m.hi && i < 16; i++) r.v[i] = p[i];
    return r;
}
inline V16 vload_n_or(const float* p, int n, float fill) { V16 r = vset(fill); for (int i = 0; i < n && i < 16; i++) r.v[i] = p[i]; return r; }
inline V16 vkeep_n(V16 v, int n) { for (int i = n < 0 ? 0 : n; i < 16; i++) v.v[i] = 0.f; return v; }
inline V16 vadd(V16 a, V16 b) { return {a.v + b.v}; }
inline V16 vsub(V16 a, V16 b) { return {a.v - b.v}; }
inline V16 vmul(V16 a, V16 b) { return {a.v * b.v}; }
inline V16 vdiv(V16 a, V16 b) { return {a.v / b.v}; }
inline V16 vmax(V16 a, V16 b) { return {a.v > b.v ? a.v : b.v}; }
inline V16 vmin(V16 a, V16 b) { return {a.v < b.v ? a.v : b.v}; }
inline V16 vwhere_lt(V16 a, V16 b, V16 t, V16 f) { return {a.v < b.v ? t.v : f.v}; }
inline V16 vfma(V16 a, V16 b, V16 c) { return {a.v * b.v + c.v}; }
inline void vreg(V16&) {}
inline float vsum(V16 a) { float s = 0; for (int i = 0; i < 16; i++) s += a.v[i]; return s; }
inline float vhmax(V16 a) { float m = a.v[0]; for (int i = 1; i < 16; i++) m = a.v[i] > m ? a.v[i] : m; return m; }
inline V16 vbits_shl23(V16 a) {
    U16 bits;
    std::memcpy(&bits, &a.v, 64);
    bits <<= 23;
    V16 r;
    std::memcpy(&r.v, &bits, 64);
    return r;
}
inline void vspread2(V16 v, V16& lo, V16& hi) {
    for (int j = 0; j < 8; j++) lo.v[2 * j] = v.v[j], lo.v[2 * j + 1] = 0.f, hi.v[2 * j] = v.v[8 + j], hi.v[2 * j + 1] = 0.f;
}
inline void vdup2(V16 v, V16& lo, V16& hi) {
    for (int j = 0; j < 8; j++) lo.v[2 * j] = lo.v[2 * j + 1] = v.v[j], hi.v[2 * j] = hi.v[2 * j + 1] = v.v[8 + j];
}
inline void vinterleave(V16 a, V16 b, V16& lo, V16& hi) {
    for (int j = 0; j < 8; j++) lo.v[2 * j] = a.v[j], lo.v[2 * j + 1] = b.v[j], hi.v[2 * j] = a.v[8 + j], hi.v[2 * j + 1] = b.v[8 + j];
}
inline V16 vpairsum(V16 a, V16 b) {
    V16 r;
    for (int j = 0; j < 8; j++) r.v[j] = a.v[2 * j] + a.v[2 * j + 1], r.v[8 + j] = b.v[2 * j] + b.v[2 * j + 1];
    return r;
}
inline V16 vrcp(V16 a) { return {1.f / a.v}; }
inline void vtranspose(V16 r[16]) {
    for (int i = 0; i < 16; i++)
        for (int j = i + 1; j < 16; j++) {
            const float t = r[i].v[j];
            r[i].v[j] = r[j].v[i], r[j].v[i] = t;
        }
}

#endif

// ---- shared by all three builds -------------------------------------------------------------

// exp(x) for x in float range: x = n ln2 + r with |r| <= ln2/2, exp(r) by the degree-6 polynomial
// of Cephes expf (S. Moshier), times 2^n. Relative error about 2 ulp; inputs are clamped to
// [-87.3, 88], so 2^n stays a normal float: no inf (exp(88) = 1.6e38), no denormal.
// n = round(x log2e) by adding 1.5 * 2^23 + 127 (rounding to nearest, the FPU's mode): between 2^23
// and 2^24 floats are the integers, so t = 1.5 * 2^23 + (n + 127) exactly, its bits the exponent
// 150, the mantissa bit 2^22 and n + 127 in the low bits. The clamp keeps x log2e in
// [-125.99999, 126.96], so n + 127 is in [1, 254], nine bits with the top one clear: shifting t's
// bits left by 23 drops the exponent and the 2^22 bit and leaves n + 127 as an exponent, the float
// 2^n. Six operations where a round, a convert, an add, a shift and two Cody-Waite steps took ten
// on AVX2 (SiLU spends most of its time here).
inline V16 vexp(V16 x) {
    x = vmin(vmax(x, vset(-87.33654f)), vset(88.f));
    const V16 magic = vset(12583039.f);  // 1.5 * 2^23 + 127
    const V16 t = vfma(x, vset(1.44269504088896341f), magic), n = vsub(t, magic);
    V16 r = vfma(n, vset(-0.693359375f), x);  // ln2 split in two for an exact first product
    r = vfma(n, vset(2.12194440e-4f), r);
    V16 p = vset(1.9875691500e-4f);
    p = vfma(p, r, vset(1.3981999507e-3f));
    p = vfma(p, r, vset(8.3334519073e-3f));
    p = vfma(p, r, vset(4.1665795894e-2f));
    p = vfma(p, r, vset(1.6666665459e-1f));
    p = vfma(p, r, vset(5.0000001201e-1f));
    p = vfma(p, vmul(r, r), vadd(r, vset(1.f)));
    return vmul(p, vbits_shl23(t));
}
