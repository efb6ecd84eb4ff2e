// Winograd F(4x4, 3x3) kernels, written once in V16 and included by conv_kernels.h into each
// instruction set's namespace. No include guard. The structs are documented in conv_isa.h, the plan
// and the derivation in conv_winograd.cpp.
//
// Every kernel works on the channel-blocked layout: a V16 holds one pixel (or one transformed
// coefficient) of 16 channels, so the transforms are plain vector arithmetic on whole registers.
// xi = 6k + l indexes the 36 coefficients of a 6x6 tile (k: row frequency, l: column frequency).

// ---- the three 1-D transforms (Lavin & Gray 2016, points 0, 1, -1, 2, -2 and infinity) ----------

// B^T d: six samples of the input to six coefficients.
__attribute__((always_inline)) inline void wino_bt(const V16 d[6], V16 t[6]) {
    const V16 four = vset(4.f), mfive = vset(-5.f), two = vset(2.f);
    t[0] = vfma(four, d[0], vfma(mfive, d[2], d[4]));           // 4d0 - 5d2 + d4
    t[1] = vfma(vset(-4.f), vadd(d[1], d[2]), vadd(d[3], d[4])); // -4d1 - 4d2 + d3 + d4
    t[2] = vfma(four, vsub(d[1], d[2]), vsub(d[4], d[3]));       // 4d1 - 4d2 - d3 + d4
    t[3] = vfma(two, vsub(d[3], d[1]), vsub(d[4], d[2]));        // -2d1 - d2 + 2d3 + d4
    t[4] = vfma(two, vsub(d[1], d[3]), vsub(d[4], d[2]));        // 2d1 - d2 - 2d3 + d4
    t[5] = vfma(four, d[1], vfma(mfive, d[3], d[5]));           // 4d1 - 5d3 + d5
}

// A^T m: six coefficients of a product to four output samples.
__attribute__((always_inline)) inline void wino_at(const V16 m[6], V16 o[4]) {
    const V16 s12 = vadd(m[1], m[2]), d12 = vsub(m[1], m[2]), s34 = vadd(m[3], m[4]), d34 = vsub(m[3], m[4]);
    o[0] = vadd(vadd(m[0], s12), s34);              // m0 + m1 + m2 + m3 + m4
    o[1] = vfma(vset(2.f), d34, d12);               // m1 - m2 + 2m3 - 2m4
    o[2] = vfma(vset(4.f), s34, s12);               // m1 + m2 + 4m3 + 4m4
    o[3] = vadd(vfma(vset(8.f), d34, d12), m[5]);   // m1 - m2 + 8m3 - 8m4 + m5
}

// A y: four samples of an output gradient to six coefficients (the transpose of wino_at).
__attribute__((always_inline)) inline void wino_a(const V16 y[4], V16 w[6]) {
    const V16 e = vadd(y[0], y[2]), f = vadd(y[1], y[3]);              // y0 + y2, y1 + y3
    const V16 g = vfma(vset(4.f), y[2], y[0]), h = vfma(vset(4.f), y[3], y[1]);  // y0 + 4y2, y1 + 4y3
    w[0] = y[0];
    w[1] = vadd(e, f);
    w[2] = vsub(e, f);
    w[3] = vfma(vset(2.f), h, g);   // y0 + 2y1 + 4y2 + 8y3
    w[4] = vfma(vset(-2.f), h, g);  // y0 - 2y1 + 4y2 - 8y3
    w[5] = y[3];
}

// ---- input transform: V = B^T d B for every tile and channel block ---------------------------------

void wino_input(const WinoInput& a) {
    for (int cb = 0; cb < a.ncb; cb++)
        for (int64_t t = 0; t < a.T; t++) {
            const float* src = a.in + cb * a.in_cb + a.tile_off[t];
            V16 r[6][6];  // r[i][l]: row i of the patch, column-transformed
            for (int i = 0; i < 6; i++) {
                V16 d[6];
                for (int j = 0; j < 6; j++) d[j] = vload(src + i * a.in_row + j * 16);
                wino_bt(d, r[i]);
            }
            float* dst = a.v + (cb * a.T + t) * 16;
            for (int l = 0; l < 6; l++) {
                V16 c[6], u[6];
                for (int i = 0; i < 6; i++) c[i] = r[i][l];
                wino_bt(c, u);
                for (int k = 0; k < 6; k++) vstore(dst + (6 * k + l) * a.v_xi, u[k]);
            }
        }
}

// ---- output-gradient transform: W = A dy A^T, tile-major ---------------------------------------------

void wino_grad_output(const WinoGradOutput& a) {
    for (int ob = 0; ob < a.nob; ob++)
        for (int64_t t = 0; t < a.T; t++) {
            const float* src = a.dy + ob * a.dy_ob + a.tile_off[t];
            V16 r[4][6];  // r[i][l]: row i of the 4x4 tile, column-transformed
            for (int i = 0; i < 4; i++) {
                V16 y[4];
                for (int j = 0; j < 4; j++) y[j] = vload(src + i * a.dy_row + j * 16);
                wino_a(y, r[i]);
            }
            float* dst = a.w + t * a.Op + ob * 16;
            for (int l = 0; l < 6; l++) {
                V16 c[4], u[6];
                for (int i = 0; i < 4; i++) c[i] = r[i][l];
                wino_a(c, u);
                for (int k = 0; k < 6; k++) vstore(dst + (6 * k + l) * a.w_xi, u[k]);
            }
        }
}

// ---- register tiles of a size known at run time -------------------------------------------------

// f(std::integral_constant<int, n>) for a run-time n in [1, MAX]: a tile size as a template argument.
template <int MAX, int N = 1, class F>
void with_size(int n, const F& f) {
    if constexpr (N <= MAX) {
        if (n == N) return f(std::integral_constant<int, N>{});
        with_size<MAX, N + 1>(n, f);
    }
}

// The output blocks of 16 channels in groups of 1 to 3, as even as possible: f(first block, group
// size as an integral_constant).
template <class F>
void for_output_groups(int64_t nob, const F& f) {
    const int64_t ng = (nob + 2) / 3;
    for (int64_t gi = 0, ob = 0; gi < ng; gi++) {
        const int nv = int((nob - ob) / (ng - gi));
        with_size<3>(nv, [&](auto NV) { f(ob, NV); });
        ob += nv;
    }
}

// ---- the 36 products: M_xi = V_xi U_xi, R tiles x NV output blocks in registers ---------------------

template <int R, int NV>
void wino_gemm_tile(const WinoGemm& a, const float* v, const float* u, float* m) {
    V16 acc[R][NV];
#pragma GCC unroll 14
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) acc[i][j] = vzero();
    for (int cb = 0; cb < a.ncb; cb++) {
        const float* vb = v + cb * a.T * 16;
        const float* ub = u + cb * 16 * a.Op;
        if (cb < a.ncb - 1 || a.c_last == 16) {
#if defined(DL_SIMD_AVX2)  // unrolled 16 deep, GCC overlapped the steps and spilled two accumulators
#pragma GCC unroll 2
#else
#pragma GCC unroll 16
#endif
            for (int c = 0; c < 16; c++) rank1_update<R, NV>(acc, vb + c, 16, ub + c * a.Op);
        } else {
            for (int c = 0; c < a.c_last; c++) rank1_update<R, NV>(acc, vb + c, 16, ub + c * a.Op);
        }
    }
#pragma GCC unroll 14
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) vstore(m + i * a.Op + j * 16, acc[i][j]);
}

template <int NV>
void wino_gemm_group(const WinoGemm& a, int64_t ob) {
    constexpr int RM = tile_rmax(NV);
    for (int xi = 0; xi < 36; xi++) {
        const float* v = a.v + xi * a.v_xi;
        const float* u = a.u + xi * a.u_xi + ob * 16;
        float* m = a.m + xi * a.m_xi + ob * 16;
        int64_t t = 0;
        for (; t + RM <= a.T; t += RM) wino_gemm_tile<RM, NV>(a, v + t * 16, u, m + t * a.Op);
        if (t < a.T)
            with_size<RM>(int(a.T - t), [&](auto R) { wino_gemm_tile<decltype(R)::value, NV>(a, v + t * 16, u, m + t * a.Op); });
    }
}

void wino_gemm(const WinoGemm& a) {
    for_output_groups(a.Op / 16, [&](int64_t ob, auto NV) { wino_gemm_group<decltype(NV)::value>(a, ob); });
}

// ---- output transform: y = A^T M A (+ bias) into the blocked output ----------------------------------

void wino_output(const WinoOutput& a) {
    for (int ob = 0; ob < a.nob; ob++) {
        const V16 bias = a.bias ? vload(a.bias + ob * 16) : vzero();
        for (int64_t t = 0; t < a.T; t++) {
            const float* src = a.m + t * a.Op + ob * 16;
            V16 r[6][4];  // r[k][j]: row frequency k, column-transformed to output column j
            for (int k = 0; k < 6; k++) {
                V16 m[6];
                for (int l = 0; l < 6; l++) m[l] = vload(src + (6 * k + l) * a.m_xi);
                wino_at(m, r[k]);
            }
            float* dst = a.out + ob * a.out_ob + a.tile_off[t];
            for (int j = 0; j < 4; j++) {
                V16 c[6], o[4];
                for (int k = 0; k < 6; k++) c[k] = r[k][j];
                wino_at(c, o);
                for (int i = 0; i < 4; i++) vstore(dst + i * a.out_row + j * 16, vadd(o[i], bias));
            }
        }
    }
}

// ---- weight gradient: dU_xi += V_xi^T W_xi, summed over the tiles ------------------------------------

template <int RC, int NV>
void wino_dw_tile(const WinoDw& a, const float* v, const float* w, float* acc) {
    V16 s[RC][NV];
#pragma GCC unroll 8
    for (int i = 0; i < RC; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) s[i][j] = vzero();
    for (int64_t t = 0; t < a.T; t++) rank1_update<RC, NV>(s, v + t * 16, 1, w + t * a.Op);
#pragma GCC unroll 8
    for (int i = 0; i < RC; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) {
            float* p = acc + i * a.Op + j * 16;
            vstore(p, vadd(vload(p), s[i][j]));
        }
}

constexpr int dw_rcmax(int NV) { return int(imin(8, kAccRegs / NV)); }

template <int NV>
void wino_dw_group(const WinoDw& a, int64_t ob) {
    constexpr int RC = dw_rcmax(NV);
    for (int xi = 0; xi < 36; xi++)
        for (int cb = 0; cb < a.ncb; cb++) {
            const float* v = a.v + xi * a.v_xi + cb * a.T * 16;
            const float* w = a.w + xi * a.w_xi + ob * 16;
            float* acc = a.acc + xi * a.acc_xi + cb * 16 * a.Op + ob * 16;
            const int cn = cb == a.ncb - 1 ? a.c_last : 16;
            int c = 0;
            for (; c + RC <= cn; c += RC) wino_dw_tile<RC, NV>(a, v + c, w, acc + c * a.Op);
            if (c < cn)
                with_size<RC>(cn - c, [&](auto R) { wino_dw_tile<decltype(R)::value, NV>(a, v + c, w, acc + c * a.Op); });
        }
}

void wino_dw(const WinoDw& a) {
    for_output_groups(a.Op / 16, [&](int64_t ob, auto NV) { wino_dw_group<decltype(NV)::value>(a, ob); });
}

// ---- blocked (ceil(C/16), Hp, Wp, 16) -> NCHW (C, H, W), the crop [0, H) x [0, W), = or += ----------

void from_blocked(const float* src, int64_t Hp, int64_t Wp, float* dst, int64_t C, int64_t H, int64_t W, bool accumulate) {
    const int64_t HW = H * W;
    for (int64_t cb = 0; cb < (C + 15) / 16; cb++) {
        const int cn = int(imin(16, C - cb * 16));
        const float* plane = src + cb * Hp * Wp * 16;
        const float* pix[16];
        for (int64_t f0 = 0; f0 < HW; f0 += 16) {  // 16 pixels of the plane at a time, across rows
            const int n = int(imin(16, HW - f0));
            pixel_ptrs(plane, Wp * 16, 0, 0, W, f0, n, pix);
            pixels_to_rows(pix, n, dst + cb * 16 * HW + f0, HW, cn, accumulate);
        }
    }
}
