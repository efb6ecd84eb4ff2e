// The convolution kernels, written once in V16 (cpu_simd.h) and included by conv_avx512.cpp,
// conv_avx2.cpp and conv_portable.cpp into one namespace per instruction set. No include guard.
// The structs they take are documented in conv_isa.h; the plan around them is in conv.cpp.
//
// Register tiles (AVX-512, 32 zmm): direct_tile keeps R pixels x NV blocks of 16 channels, R*NV <= 28,
// and per input channel loads NV weight vectors and broadcasts R input scalars: R*NV FMAs for
// NV + R loads. dw_tile keeps RC input channels x NV output blocks (RC*NV <= 24) and per pixel loads NV
// dy vectors and broadcasts RC inputs.

constexpr int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- layout -------------------------------------------------------------------------------------

// NCHW (C, H, W) -> blocked (ceil(C/16), Hp, Wp, 16), image at [pt, pt+H) x [pl, pl+W), zeros elsewhere.
// The interior goes through 16x16 register transposes: 16 channel rows in, 16 pixels out.
void to_blocked(const float* src, int64_t C, int64_t H, int64_t W, float* dst, int64_t Hp, int64_t Wp, int64_t pt,
                int64_t pl) {
    const int64_t CB = (C + 15) / 16;
    for (int64_t cb = 0; cb < CB; cb++) {
        float* d = dst + cb * Hp * Wp * 16;
        const int cn = int(imin(16, C - cb * 16));
        for (int64_t r = 0; r < Hp; r++) {
            float* row = d + r * Wp * 16;
            if (r < pt || r >= pt + H) {
                std::memset(row, 0, size_t(Wp * 16) * sizeof(float));
                continue;
            }
            std::memset(row, 0, size_t(pl * 16) * sizeof(float));
            std::memset(row + (pl + W) * 16, 0, size_t((Wp - pl - W) * 16) * sizeof(float));
            const float* s = src + (cb * 16 * H + (r - pt)) * W;  // channel cb*16, row r - pt
            for (int64_t w0 = 0; w0 < W; w0 += 16) {
                const int wn = int(imin(16, W - w0));
                V16 t[16];
                for (int c = 0; c < 16; c++) t[c] = c < cn ? vload_n(s + c * H * W + w0, wn) : vzero();
                vtranspose(t);
                for (int j = 0; j < wn; j++) vstore(row + (pl + w0 + j) * 16, t[j]);
            }
        }
    }
}

// ---- direct convolution tile (forward; backward-data as a forward over dy) -----------------------

// One input channel of a tile: NV weight vectors, R broadcast inputs, R*NV FMAs.
template <int R, int NV, int SIN>
__attribute__((always_inline)) inline void direct_step(V16 (&acc)[R][NV], const float* x, const float* wc, int c) {
    V16 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) wv[v] = vload(wc + 16 * v);
#pragma GCC unroll 14
    for (int j = 0; j < R; j++) {
        const V16 xv = vset(x[j * SIN * 16 + c]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[j][v] = vfma(xv, wv[v], acc[j][v]);
    }
}

template <int R, int NV, int SIN>
void direct_tile(const DirectTile& a) {
    V16 acc[R][NV];
#pragma GCC unroll 14
    for (int j = 0; j < R; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[j][v] = vzero();
    const float* w = a.w;
    for (int cb = 0; cb < a.ncb; cb++) {
        const float* xb = a.in + cb * a.in_cb_stride;
        const int cn = cb == a.ncb - 1 ? a.c_last : 16;
        for (int t = 0; t < a.ntaps; t++) {
            const float* x = xb + a.tap_off[t];
            if (cn == 16) {
#pragma GCC unroll 16
                for (int c = 0; c < 16; c++) direct_step<R, NV, SIN>(acc, x, w + c * NV * 16, c);
            } else {
                for (int c = 0; c < cn; c++) direct_step<R, NV, SIN>(acc, x, w + c * NV * 16, c);
            }
            w += cn * NV * 16;
        }
    }
    // transpose each 16-channel block (R pixels x 16 channels -> 16 channels x R pixels) and store
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        if (16 * v >= a.nout) break;
        V16 rows[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) rows[j] = j < R ? acc[j < R ? j : 0][v] : vzero();
        vtranspose(rows);
        const int on = int(imin(16, a.nout - 16 * v));
        for (int o = 0; o < on; o++) {
            float* p = a.out + (16 * v + o) * a.out_cstride;
            V16 r = rows[o];
            if (a.bias) r = vadd(r, vset(a.bias[16 * v + o]));
            if (a.out_jstride == 1) {
                if (a.accumulate) r = vadd(r, vload_n(p, R));
                vstore_n(p, r, R);
            } else {
                float tmp[16];
                vstore(tmp, r);
                for (int j = 0; j < R; j++) p[j * a.out_jstride] = (a.accumulate ? p[j * a.out_jstride] : 0.f) + tmp[j];
            }
        }
    }
}

constexpr int tile_rmax(int NV) { return int(imin(kMaxTileR, kAccRegs / NV)); }

template <int NV, int SIN, int R = 1>
void direct_dispatch(const DirectTile& a, int r) {
    if constexpr (R <= tile_rmax(NV)) {
        if (r == R) return direct_tile<R, NV, SIN>(a);
        direct_dispatch<NV, SIN, R + 1>(a, r);
    }
}

void direct_tile_any(const DirectTile& a, int R, int NV, int SIN) {
    if (SIN == 1) {
        if (NV == 1) direct_dispatch<1, 1>(a, R);
        else if (NV == 2) direct_dispatch<2, 1>(a, R);
        else direct_dispatch<4, 1>(a, R);
    } else {
        if (NV == 1) direct_dispatch<1, 2>(a, R);
        else if (NV == 2) direct_dispatch<2, 2>(a, R);
        else direct_dispatch<4, 2>(a, R);
    }
}

// ---- weight gradient ------------------------------------------------------------------------------

template <int RC, int NV, int SIN>
void dw_tile(const DwTile& a) {
    V16 acc[RC][NV];
#pragma GCC unroll 8
    for (int c = 0; c < RC; c++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[c][v] = vzero();
    for (int64_t img = 0; img < a.nimg; img++)
        for (int64_t i = 0; i < a.Ho; i++) {
            const float* xr = a.x + img * a.x_img + i * SIN * a.x_row;
            const float* dr = a.dy + img * a.dy_img + i * a.Wo * 16;
            for (int64_t j = 0; j < a.Wo; j++) {
                V16 d[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) d[v] = vload(dr + v * a.dy_ob + j * 16);
#pragma GCC unroll 8
                for (int c = 0; c < RC; c++) {
                    const V16 xv = vset(xr[j * SIN * 16 + c]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) acc[c][v] = vfma(xv, d[v], acc[c][v]);
                }
            }
        }
#pragma GCC unroll 8
    for (int c = 0; c < RC; c++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float* p = a.acc + c * a.acc_ld + 16 * v;
            vstore(p, vadd(vload(p), acc[c][v]));
        }
}

template <int NV, int SIN, int RC = 1>
void dw_dispatch(const DwTile& a, int rc) {
    if constexpr (RC <= 8) {
        if (rc == RC) return dw_tile<RC, NV, SIN>(a);
        dw_dispatch<NV, SIN, RC + 1>(a, rc);
    }
}

void dw_tile_any(const DwTile& a, int RC, int NV, int SIN) {
    if (SIN == 1) {
        if (NV == 1) dw_dispatch<1, 1>(a, RC);
        else if (NV == 2) dw_dispatch<2, 1>(a, RC);
        else dw_dispatch<3, 1>(a, RC);
    } else {
        if (NV == 1) dw_dispatch<1, 2>(a, RC);
        else if (NV == 2) dw_dispatch<2, 2>(a, RC);
        else dw_dispatch<3, 2>(a, RC);
    }
}

// All 9 taps of a 3x3 kernel in registers (9 x NV accumulators); u is a single channel.
template <int NV>
void dw_taps(const DwTaps& a) {
    constexpr int NT = 9;
    V16 acc[NT][NV];
#pragma GCC unroll 9
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[t][v] = vzero();
    int64_t off[NT];
    for (int t = 0; t < NT; t++) off[t] = a.uoff[t];
    for (int64_t img = 0; img < a.nimg; img++)
        for (int64_t i = 0; i < a.Hv; i++) {
            const float* ur = a.u + img * a.u_img + i * a.u_row;
            const float* vr = a.v + img * a.v_img + i * a.Wv * 16;
            for (int64_t j = 0; j < a.Wv; j++) {
                V16 d[NV];
#pragma GCC unroll 2
                for (int v = 0; v < NV; v++) d[v] = vload(vr + v * a.v_vstride + j * 16);
#pragma GCC unroll 9
                for (int t = 0; t < NT; t++) {
                    const V16 uv = vset(ur[j + off[t]]);
#pragma GCC unroll 2
                    for (int v = 0; v < NV; v++) acc[t][v] = vfma(uv, d[v], acc[t][v]);
                }
            }
        }
    for (int t = 0; t < NT; t++)
        for (int v = 0; v < NV; v++) {
            float* p = a.acc + t * NV * 16 + 16 * v;
            vstore(p, vadd(vload(p), acc[t][v]));
        }
}

void dw_taps_any(const DwTaps& a, int NV) {
    if (NV == 1) dw_taps<1>(a);
    else dw_taps<2>(a);
}

// ---- one output channel ----------------------------------------------------------------------------

template <int R>
void many_to_one(const ManyToOne& a) {
    V16 acc[R];
#pragma GCC unroll 16
    for (int j = 0; j < R; j++) acc[j] = vzero();
    const float* w = a.w;
    for (int cb = 0; cb < a.ncb; cb++)
        for (int t = 0; t < a.ntaps; t++, w += 16) {
            const V16 wv = vload(w);
            const float* x = a.in + cb * a.in_cb_stride + a.tap_off[t];
#pragma GCC unroll 16
            for (int j = 0; j < R; j++) acc[j] = vfma(vload(x + j * 16), wv, acc[j]);
        }
    // lane sums of the R accumulators, all at once: transpose, then add the 16 rows
    V16 rows[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) rows[j] = j < R ? acc[j < R ? j : 0] : vzero();
    vtranspose(rows);
    V16 s = vset(a.bias);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) s = vadd(s, rows[j]);
    if (a.accumulate) s = vadd(s, vload_n(a.out, R));
    vstore_n(a.out, s, R);
}

template <int R = 1>
void many_to_one_dispatch(const ManyToOne& a, int r) {
    if constexpr (R <= 16) {
        if (r == R) return many_to_one<R>(a);
        many_to_one_dispatch<R + 1>(a, r);
    }
}
void many_to_one_any(const ManyToOne& a, int R) { many_to_one_dispatch(a, R); }

// ---- one input channel -----------------------------------------------------------------------------

// 16 pixels x 4 output channels at a time: each shifted input vector feeds 4 FMAs.
void one_to_many(const OneToMany& a) {
    const int nt = a.kh * a.kw;
    for (int64_t j0 = 0; j0 < a.width; j0 += 16) {
        const int n = int(imin(16, a.width - j0));
        const float* x = a.in + j0;
        for (int o0 = 0; o0 < a.nout; o0 += 4) {
            const int on = int(imin(4, a.nout - o0));
            V16 acc[4];
            for (int k = 0; k < 4; k++) acc[k] = vset(a.bias && k < on ? a.bias[o0 + k] : 0.f);
            const float* w = a.w + o0 * nt;
            for (int p = 0; p < a.kh; p++)
                for (int q = 0; q < a.kw; q++) {
                    const V16 xv = vload(x + p * a.in_row + q);
                    const int t = p * a.kw + q;
                    if (on == 4) {
#pragma GCC unroll 4
                        for (int k = 0; k < 4; k++) acc[k] = vfma(vset(w[k * nt + t]), xv, acc[k]);
                    } else {
                        for (int k = 0; k < on; k++) acc[k] = vfma(vset(w[k * nt + t]), xv, acc[k]);
                    }
                }
            for (int k = 0; k < on; k++) {
                float* p = a.out + (o0 + k) * a.out_cstride + j0;
                V16 r = acc[k];
                if (a.accumulate) r = vadd(r, vload_n(p, n));
                vstore_n(p, r, n);
            }
        }
    }
}

const ConvIsa kConvIsa{kIsaName, kAccRegs, to_blocked, direct_tile_any, dw_tile_any, dw_taps_any, many_to_one_any,
                       one_to_many};
