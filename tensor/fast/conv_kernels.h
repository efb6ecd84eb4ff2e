// The convolution kernels, written once in V16 (simd.h) and included by conv_avx512.cpp,
// conv_avx2.cpp and conv_portable.cpp into one namespace per instruction set. No include guard.
// The structs they take are documented in conv_isa.h; the plan around them is in conv.cpp.
//
// Register tiles (AVX-512, 32 zmm): direct_tile keeps R pixels x NV blocks of 16 channels, R*NV <= 28,
// and per input channel loads NV weight vectors and broadcasts R input scalars: R*NV FMAs for
// NV + R loads. dw_tile keeps RC input channels x NV output blocks (RC*NV <= 24) and per pixel loads NV
// dy vectors and broadcasts RC inputs.

constexpr int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- layout -------------------------------------------------------------------------------------

// A block of cn <= 16 channel rows (src, `stride` floats apart) x n <= 16 pixels <-> n pixel
// vectors of 16 channels, the j-th at pix[j], zero past cn. The pixels are consecutive in the rows
// and anywhere in the blocked layout, so a block may span rows of the image: the layout changes
// below run over each channel plane as one row of H*W pixels, and only the plane's last block is
// partial. One 16x16 register transpose; AVX2 goes through four 8x8 ones on ymm halves instead,
// since a 16x16 block of V16s (32 ymm) does not fit its 16 registers: transposing rows of the image
// with spills, the layout changes took 10-14% of a Winograd step (perf, ch16, Zen 3).
inline void rows_to_pixels(const float* src, int64_t stride, int cn, int n, float* const* pix) {
#if defined(DL_SIMD_AVX2)
    if (cn == 16 && n == 16) {  // the usual block, without the general case's branches on each row
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
            for (int q = 0; q < 16; q += 8) {
                __m256 r[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (8 * h + i) * stride + q);
                transpose8(r);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) _mm256_storeu_ps(pix[q + j] + 8 * h, r[j]);
            }
        return;
    }
    for (int h = 0; h < 2; h++)         // channels 8h .. 8h + 7
        for (int q = 0; q < n; q += 8) {  // pixels q .. q + 7
            const int pn = int(imin(8, n - q));
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                const float* s = src + (8 * h + i) * stride + q;
                r[i] = 8 * h + i >= cn ? _mm256_setzero_ps() : pn == 8 ? _mm256_loadu_ps(s) : _mm256_maskload_ps(s, lanes_mask8(pn));
            }
            transpose8(r);
            for (int j = 0; j < pn; j++) _mm256_storeu_ps(pix[q + j] + 8 * h, r[j]);
        }
#else
    V16 t[16];
    for (int c = 0; c < 16; c++) t[c] = c < cn ? vload_n(src + c * stride, n) : vzero();
    vtranspose(t);
    for (int j = 0; j < n; j++) vstore(pix[j], t[j]);
#endif
}

// The reverse: n pixel vectors at pix[j] -> the first cn channel rows of dst, = or +=.
inline void pixels_to_rows(const float* const* pix, int n, float* dst, int64_t stride, int cn, bool accumulate) {
#if defined(DL_SIMD_AVX2)
    if (cn == 16 && n == 16) {  // the usual block, as in rows_to_pixels
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
            for (int q = 0; q < 16; q += 8) {
                __m256 r[8];
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(pix[q + j] + 8 * h);
                transpose8(r);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    float* d = dst + (8 * h + i) * stride + q;
                    _mm256_storeu_ps(d, accumulate ? _mm256_add_ps(_mm256_loadu_ps(d), r[i]) : r[i]);
                }
            }
        return;
    }
    for (int h = 0; 8 * h < cn; h++)
        for (int q = 0; q < n; q += 8) {
            const int pn = int(imin(8, n - q));
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = j < pn ? _mm256_loadu_ps(pix[q + j] + 8 * h) : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < int(imin(8, cn - 8 * h)); i++) {
                float* d = dst + (8 * h + i) * stride + q;
                if (pn == 8) _mm256_storeu_ps(d, accumulate ? _mm256_add_ps(_mm256_loadu_ps(d), r[i]) : r[i]);
                else store8_n(d, accumulate ? _mm256_add_ps(_mm256_maskload_ps(d, lanes_mask8(pn)), r[i]) : r[i], pn);
            }
        }
#else
    V16 t[16];
    for (int j = 0; j < 16; j++) t[j] = j < n ? vload(pix[j]) : vzero();
    vtranspose(t);
    for (int c = 0; c < cn; c++) {
        float* d = dst + c * stride;
        vstore_n(d, accumulate ? vadd(vload_n(d, n), t[c]) : t[c], n);
    }
#endif
}

// Pointers to the pixel vectors of the image pixels f0 .. f0 + n - 1 (in row-major order, rows of W)
// in a blocked plane whose rows are `row` floats apart, the image at (pt, pl).
template <class F>  // float or const float
inline void pixel_ptrs(F* plane, int64_t row, int64_t pt, int64_t pl, int64_t W, int64_t f0, int n, F** pix) {
    int64_t r = f0 / W, w = f0 % W;
    for (int j = 0; j < n; j++) {
        pix[j] = plane + (pt + r) * row + (pl + w) * 16;
        if (++w == W) w = 0, r++;
    }
}

// NCHW (C, H, W) -> blocked (ceil(C/16), Hp, Wp, 16), image at [pt, pt+H) x [pl, pl+W), zeros elsewhere,
// 16 channel rows x 16 pixels at a time. With csum, also csum[c] += sum of channel c (a bias
// gradient: the sum of the pixel vectors just written).
void to_blocked(const float* src, int64_t C, int64_t H, int64_t W, float* dst, int64_t Hp, int64_t Wp, int64_t pt,
                int64_t pl, float* csum) {
    const int64_t CB = (C + 15) / 16, HW = H * W;
    for (int64_t cb = 0; cb < CB; cb++) {
        float* d = dst + cb * Hp * Wp * 16;
        const int cn = int(imin(16, C - cb * 16));
        for (int64_t r = 0; r < Hp; r++) {  // the padding
            float* row = d + r * Wp * 16;
            const bool inside = r >= pt && r < pt + H;
            for (int64_t j = 0; j < (inside ? pl : Wp); j++) vstore(row + j * 16, vzero());
            for (int64_t j = pl + W; inside && j < Wp; j++) vstore(row + j * 16, vzero());
        }
        V16 cs = vzero();
        const float* s = src + cb * 16 * HW;  // channel cb*16
        float* pix[16];
        for (int64_t f0 = 0; f0 < HW; f0 += 16) {  // 16 pixels of the plane at a time, across rows
            const int n = int(imin(16, HW - f0));
            pixel_ptrs(d, Wp * 16, pt, pl, W, f0, n, pix);
            rows_to_pixels(s + f0, HW, cn, n, pix);
            if (csum)
                for (int j = 0; j < n; j++) cs = vadd(cs, vload(pix[j]));
        }
        if (csum) vstore_n(csum + cb * 16, vadd(vload_n(csum + cb * 16, cn), cs), cn);
    }
}

// ---- direct convolution tile (forward; backward-data as a forward over dy) -----------------------

// One rank-1 update of a register tile, the inner step of the direct and the pointwise kernels:
//   acc[i][v] += s[i * s_stride] * vec[16 v .. 16 v + 16)     for i < R, v < NV
// R broadcasts, NV vector loads, R*NV FMAs. One operand is held in registers while the other
// streams past it; which one is a matter of the register budget. AVX2 has 16 ymm registers and a
// V16 takes two: a 3 x 2 tile's 12 accumulators leave 4, too few for 4 vector halves and a
// broadcast (GCC then kept one accumulator on the stack, a store and reload in every step's
// dependency chain: the 3x3 forward ran at 40% of the FMA peak). So when the R broadcasts are
// fewer than the 2*NV halves, AVX2 holds the broadcasts and streams the vectors one ymm at a
// time (2*R*NV + R + 1 registers); otherwise, and on the other ISAs, the vectors are held.
// MASKED: the vectors are read through mk[v] (a row's last pixels), zero in the lanes it leaves out.
template <int R, int NV, bool MASKED = false>
__attribute__((always_inline)) inline void rank1_update(V16 (&acc)[R][NV], const float* s, int64_t s_stride, const float* vec,
                                                        const VMask* mk = nullptr) {
#if defined(DL_SIMD_AVX2)
    if constexpr (R < 2 * NV) {
        __m256 sv[R];
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            sv[i] = _mm256_broadcast_ss(s + i * s_stride);
            asm("" : "+x"(sv[i]));
        }
#pragma GCC unroll 8
        for (int hv = 0; hv < 2 * NV; hv++) {  // half hv % 2 of vector hv / 2
            __m256 vh = MASKED ? _mm256_maskload_ps(vec + 8 * hv, hv % 2 ? mk[hv / 2].hi : mk[hv / 2].lo)
                               : _mm256_loadu_ps(vec + 8 * hv);
            asm("" : "+x"(vh));
#pragma GCC unroll 14
            for (int i = 0; i < R; i++) {
                __m256& r = hv % 2 ? acc[i][hv / 2].hi : acc[i][hv / 2].lo;
                r = _mm256_fmadd_ps(sv[i], vh, r);
            }
        }
        return;
    }
#endif
    V16 vv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) vv[v] = MASKED ? vload_mask(vec + 16 * v, mk[v]) : vload(vec + 16 * v), vreg(vv[v]);
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        const V16 sb = vset(s[i * s_stride]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = vfma(sb, vv[v], acc[i][v]);
    }
}

template <int R, int NV, int SIN>
void direct_tile(const DirectTile& a) {
    // the output lines this tile will write: fetch them now, the sum below hides the latency
    if (a.pair != 1) {
        const int64_t span = a.pair == 2 ? a.pair_count : (R - 1) * a.out_jstride + 1;  // floats per channel
        for (int o = 0; o < a.nout; o++) {
            const float* p = a.out + o * a.out_cstride;
            __builtin_prefetch(p, 1);
            if (span > 16 - int64_t((reinterpret_cast<uintptr_t>(p) & 63) / 4)) __builtin_prefetch(p + span - 1, 1);
        }
    }
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
                for (int c = 0; c < 16; c++) rank1_update<R, NV>(acc, x + c, SIN * 16, w + c * NV * 16);
            } else {
                for (int c = 0; c < cn; c++) rank1_update<R, NV>(acc, x + c, SIN * 16, w + c * NV * 16);
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
        if (a.pair == 1) {  // park for the second phase
            for (int o = 0; o < on; o++) vstore(a.pair_buf + (16 * v + o) * 16, rows[o]);
            continue;
        }
        if (a.pair == 2) {  // out[2j] += first phase, out[2j + 1] += this one
            const int n0 = a.pair_count < 16 ? a.pair_count : 16, n1 = a.pair_count - n0;
            for (int o = 0; o < on; o++) {
                float* p = a.out + (16 * v + o) * a.out_cstride;
                V16 lo, hi;
                vinterleave(vload(a.pair_buf + (16 * v + o) * 16), rows[o], lo, hi);
                vstore_n(p, vadd(vload_n(p, n0), lo), n0);
                if (n1 > 0) vstore_n(p + 16, vadd(vload_n(p + 16, n1), hi), n1);
            }
            continue;
        }
        for (int o = 0; o < on; o++) {
            float* p = a.out + (16 * v + o) * a.out_cstride;
            V16 r = rows[o];
            if (a.bias) r = vadd(r, vset(a.bias[16 * v + o]));
            if (a.out_jstride == 1) {
                if (a.accumulate) r = vadd(r, vload_n(p, R));
                vstore_n(p, r, R);
            } else if (a.out_jstride == 2 && a.accumulate) {
                // every other float (a backward-data phase of stride 2): add the tile spread with zeros
                // in between; the zeros land on the other phase's pixels of the same row, which the
                // same thread handles (conv.cpp keeps a row's phases in one work item)
                V16 lo, hi;
                vspread2(r, lo, hi);
                const int n = 2 * R - 1;
                vstore_n(p, vadd(vload_n(p, n < 16 ? n : 16), lo), n < 16 ? n : 16);
                if (n > 16) vstore_n(p + 16, vadd(vload_n(p + 16, n - 16), hi), n - 16);
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
                for (int v = 0; v < NV; v++) d[v] = vload(dr + v * a.dy_ob + j * 16), vreg(d[v]);
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

// ---- 3x3 with a single channel on one side ----------------------------------------------------------

// Output channels NO at a time over one 16-pixel chunk whose 9 shifted input vectors are in x.
template <int NO>
__attribute__((always_inline)) inline void one_to_many_block(const OneToMany& a, const V16 (&x)[9], int o, int64_t j0,
                                                             int n) {
    V16 acc[NO];
#pragma GCC unroll 8
    for (int k = 0; k < NO; k++) acc[k] = a.bias ? vset(a.bias[o + k]) : vzero();
    const float* w = a.w + o * 9;
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
#pragma GCC unroll 8
        for (int k = 0; k < NO; k++) acc[k] = vfma(vset(w[k * 9 + t]), x[t], acc[k]);
#pragma GCC unroll 8
    for (int k = 0; k < NO; k++) {
        float* p = a.out + (o + k) * a.out_cstride + j0;
        if (n == 16) {
            vstore(p, a.accumulate ? vadd(acc[k], vload(p)) : acc[k]);
        } else {
            vstore_n(p, a.accumulate ? vadd(acc[k], vload_n(p, n)) : acc[k], n);
        }
    }
}

void one_to_many(const OneToMany& a) {
    for (int64_t j0 = 0; j0 < a.width; j0 += 16) {
        const int n = int(imin(16, a.width - j0));
        if constexpr (kAccRegs >= 16) {  // the 9 shifted inputs stay in registers for all output channels
            V16 x[9];
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) x[t] = vload(a.in + (t / 3) * a.in_row + j0 + t % 3);
            int o = 0;
            for (; o + 8 <= a.nout; o += 8) one_to_many_block<8>(a, x, o, j0, n);
            for (; o < a.nout; o++) one_to_many_block<1>(a, x, o, j0, n);
        } else {  // few registers (AVX2): reload each shifted input per block of 4 output channels
            for (int o = 0; o < a.nout; o += 4) {
                const int on = int(imin(4, a.nout - o));
                V16 acc[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) acc[k] = a.bias && k < on ? vset(a.bias[o + k]) : vzero();
                const float* w = a.w + o * 9;
                for (int t = 0; t < 9; t++) {
                    V16 xv = vload(a.in + (t / 3) * a.in_row + j0 + t % 3);
                    vreg(xv);
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) acc[k] = vfma(vset(k < on ? w[k * 9 + t] : 0.f), xv, acc[k]);
                }
                for (int k = 0; k < on; k++) {
                    float* p = a.out + (o + k) * a.out_cstride + j0;
                    vstore_n(p, a.accumulate ? vadd(acc[k], vload_n(p, n)) : acc[k], n);
                }
            }
        }
    }
}

// RR output rows x 16 pixels: each shifted input row vector feeds up to 3 output rows (taps p).
constexpr int kManyRows = kAccRegs >= 8 ? 8 : 2;

void many_to_one(const ManyToOne& a) {
    constexpr int RR = kManyRows;
    const int64_t plane = a.H * a.W;
    for (int64_t i0 = 0; i0 < a.H; i0 += RR)
        for (int64_t j0 = 0; j0 < a.W; j0 += 16) {
            const int n = int(imin(16, a.W - j0));
            VMask m[3];  // lane l reads column j0 + l + q - 1, which must be in [0, W)
            for (int q = 0; q < 3; q++) m[q] = vmask_range(int(j0 + q - 1 < 0 ? 1 - q - j0 : 0), int(imin(16, a.W - (j0 + q - 1))));
            V16 acc[RR];
#pragma GCC unroll 8
            for (int r = 0; r < RR; r++) acc[r] = vset(a.bias);
            for (int64_t c = 0; c < a.C; c++) {
                V16 w[9];
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++) w[t] = vset(a.w[c * 9 + t]);
                const float* src = a.in + c * plane + (i0 - 1) * a.W + j0 - 1;
#pragma GCC unroll 10
                for (int rr = 0; rr < RR + 2; rr++, src += a.W) {  // input row i0 - 1 + rr feeds output rows rr - p
                    if (i0 - 1 + rr < 0 || i0 - 1 + rr >= a.H) continue;
#pragma GCC unroll 3
                    for (int q = 0; q < 3; q++) {
                        const V16 v = vload_mask(src + q, m[q]);
#pragma GCC unroll 3
                        for (int p = 0; p < 3; p++)
                            if (rr - p >= 0 && rr - p < RR) acc[rr - p] = vfma(w[3 * p + q], v, acc[rr - p]);
                    }
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < RR; r++) {  // unrolled with constant indices, so acc stays in registers
                if (i0 + r >= a.H) break;
                float* p = a.out + (i0 + r) * a.W + j0;
                vstore_n(p, a.accumulate ? vadd(acc[r], vload_n(p, n)) : acc[r], n);
            }
        }
}

// MB channels x 9 taps of accumulators (and, with BIAS, the plain sum of each channel in acc[k][9]);
// per 16 pixels, 9 shifted single-plane vectors shared by MB channel vectors.
template <int MB, bool BIAS>
void dw_single_block(const DwSingle& a, int64_t m0) {
    constexpr int NT = BIAS ? 10 : 9;
    V16 acc[MB][NT];
#pragma GCC unroll 3
    for (int k = 0; k < MB; k++)
#pragma GCC unroll 10
        for (int t = 0; t < NT; t++) acc[k][t] = vzero();
    int64_t off[9];
    for (int t = 0; t < 9; t++) off[t] = a.off[t];
    const int64_t plane = a.H * a.W;
    for (int64_t r = 0; r < a.nimg * a.H; r++) {  // rows of all images as one loop (GCC then keeps acc in registers)
        const int64_t img = r / a.H, i = r % a.H;
        const float* mrow = a.many + img * a.many_img + m0 * plane + i * a.W;
        const float* srow = a.single + img * a.single_img + i * a.single_row;
        for (int64_t j0 = 0; j0 < a.W; j0 += 16) {
            const VMask mk = vmask_range(0, int(imin(16, a.W - j0)));
            V16 m[MB];
#pragma GCC unroll 3
            for (int k = 0; k < MB; k++) m[k] = vload_mask(mrow + k * plane + j0, mk);
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) {
                V16 s = vload(srow + j0 + off[t]);
                vreg(s);
#pragma GCC unroll 3
                for (int k = 0; k < MB; k++) acc[k][t] = vfma(m[k], s, acc[k][t]);
            }
            if constexpr (BIAS) {
#pragma GCC unroll 3
                for (int k = 0; k < MB; k++) acc[k][9] = vadd(acc[k][9], m[k]);
            }
        }
    }
#pragma GCC unroll 3
    for (int k = 0; k < MB; k++) {
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) a.acc[(m0 + k) * 9 + t] += vsum(acc[k][t]);
        if constexpr (BIAS) a.bias_acc[m0 + k] += vsum(acc[k][9]);
    }
}

void dw_single(const DwSingle& a) {
    constexpr int MB = kAccRegs >= 18 ? 2 : 1, MBB = MB;  // 18 or 20 accumulators, 2 channel vectors, 1 shifted plane vector
    int64_t m = 0;
    if (a.bias_acc) {
        for (; m + MBB <= a.M; m += MBB) dw_single_block<MBB, true>(a, m);
        for (; m < a.M; m++) dw_single_block<1, true>(a, m);
    } else {
        for (; m + MB <= a.M; m += MB) dw_single_block<MB, false>(a, m);
        for (; m < a.M; m++) dw_single_block<1, false>(a, m);
    }
}

// out[i] += sum of plane i (P floats), four vector accumulators for latency.
void sum_planes(const float* src, int64_t n, int64_t P, float* out) {
    for (int64_t i = 0; i < n; i++) {
        const float* s = src + i * P;
        V16 a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
        int64_t k = 0;
        for (; k + 64 <= P; k += 64) {
            a0 = vadd(a0, vload(s + k)), a1 = vadd(a1, vload(s + k + 16));
            a2 = vadd(a2, vload(s + k + 32)), a3 = vadd(a3, vload(s + k + 48));
        }
        for (; k < P; k += 16) a0 = vadd(a0, vload_n(s + k, int(imin(16, P - k))));
        out[i] += vsum(vadd(vadd(a0, a1), vadd(a2, a3)));
    }
}

// ---- 1x1 (pointwise) ---------------------------------------------------------------------------------

constexpr int kPwMR = kAccRegs >= 16 ? 8 : kAccRegs >= 6 ? 3 : 2;  // output channels x kPwNV vectors of pixels
constexpr int kPwNV = kAccRegs >= 24 ? 3 : 2;

template <int MR, int NV>
void pointwise_tile(const Pointwise& a, const float* w, int64_t o0, int64_t p0, int64_t p1) {
    const int n = int(imin(16 * NV, p1 - p0));
    VMask mk[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; v++) mk[v] = vmask_range(0, int(imin(16, n - 16 * v)));
    V16 acc[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[i][v] = vzero();
    const float* x = a.x + p0;
    if (n == 16 * NV)  // a full tile: W's column c broadcast against x's row c
        for (int64_t c = 0; c < a.K; c++, x += a.P, w += MR) rank1_update<MR, NV>(acc, w, 1, x);
    else  // the tail of a row: masked loads, in the same register plan (a loop of its own spilled on AVX2)
        for (int64_t c = 0; c < a.K; c++, x += a.P, w += MR) rank1_update<MR, NV, true>(acc, w, 1, x, mk);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (o0 + i >= a.M) break;
        float* y = a.y + (o0 + i) * a.P + p0;
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            V16 r = acc[i][v];
            if (a.bias) r = vadd(r, vset(a.bias[o0 + i]));
            const int nl = int(imin(16, n - 16 * v));  // 1..16: tail tiles have at least one pixel per vector
            if (a.accumulate) r = vadd(r, vload_n(y + 16 * v, nl));
            vstore_n(y + 16 * v, r, nl);
        }
    }
}

// Pixel chunks outer, output-channel panels, then the chunk's pixel tiles: a chunk of x (K x up to
// 32 KiB / K pixels) stays in L1/L2 while every panel of W passes over it, and y is written a panel
// (MR rows) at a time along the chunk. Panels innermost instead (one pixel tile at a time through
// all M rows) writes M rows at once, 16-32 floats each: at K = 16 that ran at 16-27 GFLOP/s against
// 40-66 in this order (bench --conv, 1x1 48->16 28px, 2 threads, Zen 3).
void pointwise(const Pointwise& a) {
    constexpr int64_t kTile = 16 * kPwNV;
    const int64_t chunk = std::max<int64_t>(kTile, (32 << 10) / (4 * a.K) / kTile * kTile);
    for (int64_t c0 = 0; c0 < a.P; c0 += chunk) {
        const int64_t c1 = imin(a.P, c0 + chunk);
        for (int64_t o0 = 0; o0 < a.M; o0 += kPwMR) {
            const float* w = a.w + o0 * a.K;
            int64_t p0 = c0;  // tiles of 48 pixels (AVX-512) or 32, then what is left in vectors of 16
            for (; p0 + kTile <= c1; p0 += kTile) pointwise_tile<kPwMR, kPwNV>(a, w, o0, p0, c1);
            for (; p0 + 16 < c1; p0 += 32) pointwise_tile<kPwMR, 2>(a, w, o0, p0, c1);
            if (p0 < c1) pointwise_tile<kPwMR, 1>(a, w, o0, p0, c1);
        }
    }
}

// MA x MB vector accumulators, each a partial dot product over 16 pixel lanes, summed at the end.
// With BIAS, the last of the MB columns is a row of ones instead of b: it sums the a rows (dy), the
// bias gradient, into a.bias_acc.
template <int MA, int MB, bool BIAS>
void pointwise_dw_tile(const PointwiseDw& a, int64_t i0, int64_t j0) {
    constexpr int NB = BIAS ? MB - 1 : MB;  // columns read from b
    V16 acc[MA][MB];
#pragma GCC unroll 4
    for (int i = 0; i < MA; i++)
#pragma GCC unroll 6
        for (int j = 0; j < MB; j++) acc[i][j] = vzero();
    // one step: 16 pixels at p (the first n of them)
    auto step = [&](const float* ar, const float* br, int64_t p, int n) __attribute__((always_inline)) {
        const VMask mk = vmask_range(0, n);
#if defined(DL_SIMD_AVX2)
        // 16 ymm registers: 2 x 3 accumulators take 12; go through the low halves of every row, then
        // the high ones, holding MA halves of a and one of b at a time (the sums are over lanes anyway)
        if constexpr (2 * MA * MB + 2 * MA + 2 > 16) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i m = h ? mk.hi : mk.lo;
                __m256 ah[MA];
#pragma GCC unroll 4
                for (int i = 0; i < MA; i++) {
                    const float* s = ar + i * a.P + p + 8 * h;
                    ah[i] = n == 16 ? _mm256_loadu_ps(s) : _mm256_maskload_ps(s, m);
                    asm("" : "+x"(ah[i]));
                }
#pragma GCC unroll 6
                for (int j = 0; j < NB; j++) {
                    const float* s = br + j * a.P + p + 8 * h;
                    __m256 bh = n == 16 ? _mm256_loadu_ps(s) : _mm256_maskload_ps(s, m);
                    asm("" : "+x"(bh));
#pragma GCC unroll 4
                    for (int i = 0; i < MA; i++) {
                        __m256& r = h ? acc[i][j].hi : acc[i][j].lo;
                        r = _mm256_fmadd_ps(ah[i], bh, r);
                    }
                }
                if constexpr (BIAS) {
#pragma GCC unroll 4
                    for (int i = 0; i < MA; i++) {
                        __m256& r = h ? acc[i][MB - 1].hi : acc[i][MB - 1].lo;
                        r = _mm256_add_ps(r, ah[i]);
                    }
                }
            }
            return;
        }
#endif
        V16 av[MA];
#pragma GCC unroll 4
        for (int i = 0; i < MA; i++) av[i] = n == 16 ? vload(ar + i * a.P + p) : vload_mask(ar + i * a.P + p, mk), vreg(av[i]);
#pragma GCC unroll 6
        for (int j = 0; j < NB; j++) {
            V16 bv = n == 16 ? vload(br + j * a.P + p) : vload_mask(br + j * a.P + p, mk);
            vreg(bv);
#pragma GCC unroll 4
            for (int i = 0; i < MA; i++) acc[i][j] = vfma(av[i], bv, acc[i][j]);
        }
        if constexpr (BIAS) {  // masked lanes of av are zero
#pragma GCC unroll 4
            for (int i = 0; i < MA; i++) acc[i][MB - 1] = vadd(acc[i][MB - 1], av[i]);
        }
    };
    for (int64_t img = 0; img < a.nimg; img++) {
        const float* ar = a.a + img * a.a_img + i0 * a.P;
        const float* br = a.b + img * a.b_img + j0 * a.P;
        int64_t p = 0;
        for (; p + 16 <= a.P; p += 16) step(ar, br, p, 16);
        if (p < a.P) step(ar, br, p, int(a.P - p));
    }
#pragma GCC unroll 4
    for (int i = 0; i < MA; i++) {
#pragma GCC unroll 6
        for (int j = 0; j < NB; j++) a.acc[(i0 + i) * a.MB + j0 + j] += vsum(acc[i][j]);
        if constexpr (BIAS) a.bias_acc[i0 + i] += vsum(acc[i][MB - 1]);
    }
}

constexpr int kPwDwA = kAccRegs >= 24 ? 4 : 2, kPwDwB = kAccRegs >= 24 ? 6 : kAccRegs >= 6 ? 3 : 2;

// The columns left after the full tiles (and the bias column), as one tile of `cols` columns.
template <int MA, int C = 1>
void pointwise_dw_tail(const PointwiseDw& a, int64_t i0, int64_t j0, int cols, bool bias) {
    if constexpr (C <= kPwDwB) {
        if (cols != C) return pointwise_dw_tail<MA, C + 1>(a, i0, j0, cols, bias);
        if (bias) pointwise_dw_tile<MA, C, true>(a, i0, j0);
        else if constexpr (C > 0) pointwise_dw_tile<MA, C, false>(a, i0, j0);
    }
}

template <int MA>
void pointwise_dw_rows(const PointwiseDw& a, int64_t i0) {
    const bool bias = a.bias_acc != nullptr;
    int64_t j0 = 0;
    for (; j0 + kPwDwB <= a.MB; j0 += kPwDwB) pointwise_dw_tile<MA, kPwDwB, false>(a, i0, j0);
    const int left = int(a.MB - j0) + (bias ? 1 : 0);
    if (left > kPwDwB) {  // bias column on its own
        pointwise_dw_tail<MA>(a, i0, j0, left - 1, false);
        pointwise_dw_tail<MA>(a, i0, a.MB, 1, true);
    } else if (left > 0) {
        pointwise_dw_tail<MA>(a, i0, j0, left, bias);
    }
}

void pointwise_dw(const PointwiseDw& a) {
    int64_t i0 = 0;
    for (; i0 + kPwDwA <= a.MA; i0 += kPwDwA) pointwise_dw_rows<kPwDwA>(a, i0);
    for (; i0 < a.MA; i0++) pointwise_dw_rows<1>(a, i0);
}

#include "tensor/fast/winograd_kernels.h"

const ConvIsa kConvIsa{kIsaName,   kAccRegs,     to_blocked,       direct_tile_any, dw_tile_any, one_to_many,
                       many_to_one, dw_single,   sum_planes,       kPwMR,           pointwise,   pointwise_dw,
                       wino_input, wino_grad_output, wino_gemm,     wino_output,     wino_dw,     from_blocked};
