// conv2d with bf16 operands and float32 sums on Intel AMX (the --precision bf16 path; see cpu.h).
//
// AMX holds eight tile registers of 16 rows x 64 bytes. TDPBF16PS multiplies a 16 x 32 bf16 tile A
// by a 32 x 16 bf16 tile B into a 16 x 16 float32 tile C:
//   C[m][n] += sum_{k < 32} A[m][k] * B[k][n],   B stored as 16 rows of (n, k % 2) pairs ("VNNI")
// 16*16*32 multiply-adds per instruction; on a Xeon with AMX, 3.0 TFLOP/s on one core
// against 0.2 for float32 FMAs (and 0.1 for AVX512_BF16's VDPBF16PS, which on that core runs at
// half the FMA rate and so cannot beat float32: measured, not built).
//
// Forward, and backward-data as a forward over dy with the flipped kernel, as an implicit GEMM:
// M = output pixels, N = output channels, K = (input channel, tap). The input is copied once per
// image into a zero-padded grid of Hp x Wp pixels, 32 channels of a pixel adjacent (bf16, so one
// pixel is one 64-byte tile row). Output pixel (i, j) is numbered m = i*Wp + j over the padded
// width: then tap (p, q) reads grid pixel m + p*Wp + q, and 16 consecutive m are 16 consecutive
// tile rows at stride 64 bytes, for any tap. The columns j >= Wo are computed and dropped
// (2/30 of the work at 28x28, 2/9 at 7x7). A register block is 32 pixels x 32 channels: 4 C tiles,
// 2 A tiles, 2 B tiles. C goes through a 16x16 transpose into the NCHW rows.
//
// Backward to the weight: dW[o][c][tap] = sum_m dy[o][m] * x[c][m + off(tap)], K = pixels. A = dy,
// rows o with pixels contiguous (dy rows laid out over the padded width, zero in the dropped
// columns, so they add nothing); B = x with pixel pairs in VNNI order. A tap's offset may be odd,
// which would split the pairs, so x is stored twice, paired from even and from odd pixels.
//
// Rounding: float32 -> bf16 round-to-nearest-even (VCVTNE2PS2BF16); each product of two rounded
// operands is within 2^-8 (relative) of the float32 product, and the sums are float32.
#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cpuid.h>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensor/conv.h"
#include "tensor/fast/conv_isa.h"
#include "tensor/cpu.h"

namespace dl::conv_detail {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,amx-tile,amx-bf16,avx2,fma")
namespace isa_amx {
#define DL_SIMD_AVX512
#include "tensor/fast/simd.h"
#undef DL_SIMD_AVX512

using bf16 = uint16_t;

// Every tile 16 rows x 64 bytes: C 0-3, A 4-5, B 6-7.
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
void load_tiles() {
    TileConfig c;
    for (int t = 0; t < 8; t++) c.colsb[t] = 64, c.rows[t] = 16;
    _tile_loadconfig(&c);
}

bf16 to_bf16(float x) {  // round to nearest even, as VCVTNEPS2BF16 (NaN stays NaN)
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16((u >> 16) | 0x40);
    return bf16((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// 16 channels [c0, c0 + cn) x pixels [w0, w0 + wn) of row h of src (C, H, W), transposed:
// t[j] = the channels of pixel w0 + j (zero past cn).
void pixel_vectors(const float* src, int64_t H, int64_t W, int64_t c0, int cn, int64_t h, int64_t w0, int wn, V16 t[16]) {
    const float* s = src + (c0 * H + h) * W + w0;
    for (int c = 0; c < 16; c++) t[c] = c < cn ? vload_n(s + c * H * W, wn) : vzero();
    vtranspose(t);
}

// (C, H, W) float -> (ceil(C/32), L, 32) bf16: the image at rows [pt, pt+H), columns [pl, pl+W) of
// a Wp-wide grid, zero elsewhere (L >= grid pixels: the tail is zero slack for the last tiles).
void to_grid32(const float* src, int64_t C, int64_t H, int64_t W, bf16* dst, int64_t Hp, int64_t Wp, int64_t L,
               int64_t pt, int64_t pl) {
    const int64_t CB = (C + 31) / 32;
    std::memset(dst, 0, size_t(CB * L * 32) * sizeof(bf16));
    for (int64_t cb = 0; cb < CB; cb++)
        for (int64_t h = 0; h < H && h + pt < Hp; h++)
            for (int64_t w0 = 0; w0 < W; w0 += 16) {
                const int wn = int(std::min<int64_t>(16, W - w0));
                const int c0 = int(std::min<int64_t>(16, C - 32 * cb)), c1 = int(std::clamp<int64_t>(C - 32 * cb - 16, 0, 16));
                V16 lo[16], hi[16];
                pixel_vectors(src, H, W, 32 * cb, c0, h, w0, wn, lo);
                pixel_vectors(src, H, W, 32 * cb + 16, c1, h, w0, wn, hi);
                bf16* d = dst + (cb * L + (h + pt) * Wp + pl + w0) * 32;
                for (int j = 0; j < wn; j++) _mm512_storeu_si512(d + j * 32, (__m512i)_mm512_cvtne2ps_pbh(hi[j].v, lo[j].v));
            }
}

// Weights as B tiles: [ob][cb][tap] blocks of 16 channel pairs x 16 outputs x 2, zero past the
// channels; NB rounded up to even so that the register block's two N tiles always exist.
void pack_weights(const AmxConv& a, const float* w, bf16* dst, int64_t NB, int64_t CB) {
    const int64_t KK = a.KH * a.KW;
    for (int64_t ob = 0; ob < NB; ob++)
        for (int64_t cb = 0; cb < CB; cb++)
            for (int64_t t = 0; t < KK; t++) {
                bf16* d = dst + ((ob * CB + cb) * KK + t) * 512;
                const int64_t p = t / a.KW, q = t % a.KW;
                for (int k = 0; k < 32; k++)
                    for (int n = 0; n < 16; n++) {
                        const int64_t o = ob * 16 + n, c = cb * 32 + k;
                        float v = 0;
                        if (o < a.Co && c < a.Ci)
                            v = a.flip ? w[((c * a.Co + o) * a.KH + a.KH - 1 - p) * a.KW + a.KW - 1 - q]
                                       : w[((o * a.Ci + c) * a.KH + p) * a.KW + q];
                        d[(k / 2) * 32 + n * 2 + k % 2] = to_bf16(v);
                    }
            }
}

// C tile (16 pixels m0.. x 16 channels o0..) in buf -> out (Co, Ho, Wo) of one image.
void store_tile(const AmxConv& a, const float* buf, int64_t m0, int64_t o0, int64_t Wp, float* out) {
    V16 r[16];
    for (int i = 0; i < 16; i++) r[i] = vload(buf + 16 * i);
    vtranspose(r);  // r[n]: channel o0 + n at the 16 pixels
    const int64_t plane = a.Ho * a.Wo;
    for (int64_t m = m0; m < m0 + 16;) {  // runs of pixels within one output row
        const int64_t i = m / Wp, j = m % Wp, end = std::min(m0 + 16, (i + 1) * Wp);
        if (i >= a.Ho) break;
        if (j < a.Wo) {
            const int64_t n = std::min(a.Wo - j, end - m);
            const __mmask16 mk = __mmask16(((1u << n) - 1u) << (m - m0));
            for (int c = 0; c < 16 && o0 + c < a.Co; c++) {
                float* p = out + (o0 + c) * plane + i * a.Wo + j;
                __m512 v = r[c].v;
                if (a.bias) v = _mm512_add_ps(v, _mm512_set1_ps(a.bias[o0 + c]));
                if (a.accumulate) v = _mm512_add_ps(v, _mm512_maskz_expandloadu_ps(mk, p));
                _mm512_mask_compressstoreu_ps(p, mk, v);
            }
        }
        m = end;
    }
}

void conv(const AmxConv& a, const float* in, const float* w, float* out) {
    const int64_t Hp = a.Ho + a.KH - 1, Wp = a.Wo + a.KW - 1, KK = a.KH * a.KW;
    const int64_t M = a.Ho * Wp, MB = (M + 31) / 32;               // 32-pixel register blocks
    const int64_t L = Hp * Wp + 32 + a.KW;                         // grid pixels + slack for the last block
    const int64_t CB = (a.Ci + 31) / 32, NB = (a.Co + 31) / 32 * 2;  // K blocks of 32 channels, N tiles of 16
    bf16* wp = reinterpret_cast<bf16*>(scratch(0, size_t(NB * CB * KK * 512 / 2)));
    bf16* grid = reinterpret_cast<bf16*>(scratch(1, size_t(a.B * CB * L * 16)));
    pack_weights(a, w, wp, NB, CB);
    std::vector<int64_t> off(static_cast<size_t>(KK));
    for (int64_t t = 0; t < KK; t++) off[size_t(t)] = (t / a.KW) * Wp + t % a.KW;
    const int64_t items = a.B * MB * (NB / 2);
#pragma omp parallel num_threads(team_threads(a.B * MB))
    {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < a.B; b++)
            to_grid32(in + b * a.Ci * a.Hi * a.Wi, a.Ci, a.Hi, a.Wi, grid + b * CB * L * 32, Hp, Wp, L, a.pt, a.pl);
        load_tiles();
        alignas(64) float buf[4][256];
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            const int64_t b = it / (MB * (NB / 2)), m0 = (it / (NB / 2)) % MB * 32, ob = it % (NB / 2) * 2;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t cb = 0; cb < CB; cb++) {
                const bf16* x = grid + (b * CB + cb) * L * 32 + m0 * 32;
                const bf16* w0 = wp + (ob * CB + cb) * KK * 512;
                const bf16* w1 = w0 + CB * KK * 512;
                for (int64_t t = 0; t < KK; t++) {
                    _tile_loadd(4, x + off[size_t(t)] * 32, 64);
                    _tile_loadd(5, x + (off[size_t(t)] + 16) * 32, 64);
                    _tile_loadd(6, w0 + t * 512, 64);
                    _tile_loadd(7, w1 + t * 512, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            _tile_stored(0, buf[0], 64);
            _tile_stored(1, buf[1], 64);
            _tile_stored(2, buf[2], 64);
            _tile_stored(3, buf[3], 64);
            float* o = out + b * a.Co * a.Ho * a.Wo;
            store_tile(a, buf[0], m0, ob * 16, Wp, o);
            store_tile(a, buf[1], m0, ob * 16 + 16, Wp, o);
            store_tile(a, buf[2], m0 + 16, ob * 16, Wp, o);
            store_tile(a, buf[3], m0 + 16, ob * 16 + 16, Wp, o);
        }
        _tile_release();
    }
}


// ---- backward to the weight ----

// x (C, H, W) of one image -> both pair layouts of x at pixels [g, g + Hp*Wp) (grid pixel m at g + m):
// xv[par] is (CB16, pairs, 16, 2): pair k holds pixels 2k + par and 2k + par + 1, the 16 channels of
// a block interleaved with the pair (VNNI). xv[par] = base + par * par_stride; zeroed beforehand.
void to_pairs(const float* src, int64_t C, int64_t H, int64_t W, bf16* base, int64_t par_stride, int64_t cb_stride,
              int64_t g, int64_t Wp, int64_t pt, int64_t pl) {
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t cb = 0; cb < (C + 15) / 16; cb++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w0 = 0; w0 < W; w0 += 16) {
                const int wn = int(std::min<int64_t>(16, W - w0));
                V16 t[16];
                pixel_vectors(src, H, W, 16 * cb, int(std::min<int64_t>(16, C - 16 * cb)), h, w0, wn, t);
                for (int j = 0; j < wn; j++) {
                    const int64_t px = g + (h + pt) * Wp + pl + w0 + j;
                    // channel c's bf16 at 16-bit position 2c (first of a pair) and 2c + 1 (second)
                    const __m512i first = _mm512_maskz_cvtepu16_epi32(0xFFFF, (__m256i)_mm512_cvtneps_pbh(t[j].v));
                    const __m512i second = _mm512_mask_slli_epi32(zero, 0xFFFF, first, 16);
                    for (int par = 0; par < 2; par++) {
                        if (px - par < 0) continue;  // pixel 0 is in no odd pair
                        const int64_t k = (px - par) >> 1;
                        const bool is_second = (px - par) & 1;
                        bf16* d = base + par * par_stride + cb * cb_stride + k * 32;
                        _mm512_mask_storeu_epi16(d, is_second ? 0xAAAAAAAAu : 0x55555555u, is_second ? second : first);
                    }
                }
            }
}

void backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias) {
    const int64_t Ho = p.Ho(), Wo = p.Wo(), Hp = Ho + p.KH - 1, Wp = Wo + p.KW - 1, KK = p.KH * p.KW;
    const int64_t CoP = (p.Cout + 31) / 32 * 32, CiP = (p.Cin + 31) / 32 * 32;  // M and N in pairs of 16-tiles
    const int64_t L = (Hp * Wp + 31) / 32 * 32;                                  // pixels per image, a K-block multiple
    const int64_t offmax = (p.KH - 1) * Wp + p.KW - 1;
    const int64_t chunk = std::max<int64_t>(1, (1 << 20) / ((CoP + 2 * CiP) * L * 2));  // images whose bf16 copies fit ~1 MiB
    const int64_t accn = KK * CoP * CiP + CoP;                                            // dW (KK, CoP, CiP), then dbias
    const int nt = int(std::max<int64_t>(1, std::min<int64_t>(team_threads(), p.B)));
    std::vector<float*> accs(static_cast<size_t>(nt));
#pragma omp parallel num_threads(nt)
    {
        const int th = omp_get_thread_num();
        float* acc = accs[size_t(th)] = scratch(4, size_t(accn));
        std::fill(acc, acc + accn, 0.f);
        const int64_t G = chunk * L + offmax + 64;  // pixels of a chunk, plus what the last taps read past it
        bf16* xv = reinterpret_cast<bf16*>(scratch(2, size_t(CiP * G)));  // 2 parities x CiP/16 x G/2 pairs x 32
        bf16* dya = reinterpret_cast<bf16*>(scratch(3, size_t(CoP * G / 2 + 16)));  // (CoP, G)
        const int64_t cb_stride = G / 2 * 32, par_stride = CiP / 16 * cb_stride;
        load_tiles();
        const int64_t b0 = p.B * th / nt, b1 = p.B * (th + 1) / nt;
        for (int64_t c0 = b0; c0 < b1; c0 += chunk) {
            const int64_t n = std::min(chunk, b1 - c0);
            std::memset(xv, 0, size_t(2 * par_stride) * sizeof(bf16));
            std::memset(dya, 0, size_t(CoP * G) * sizeof(bf16));
            for (int64_t b = 0; b < n; b++) {
                to_pairs(x + (c0 + b) * p.Cin * p.H * p.W, p.Cin, p.H, p.W, xv, par_stride, cb_stride, b * L, Wp, p.pad, p.pad);
                for (int64_t o = 0; o < p.Cout; o++) {  // dy rows over the padded width; the bias gradient in float32
                    const float* src = dy + ((c0 + b) * p.Cout + o) * Ho * Wo;
                    __m512 sum = _mm512_setzero_ps();
                    for (int64_t i = 0; i < Ho; i++)
                        for (int64_t j0 = 0; j0 < Wo; j0 += 16) {
                            const __mmask16 mk = __mmask16((1u << std::min<int64_t>(16, Wo - j0)) - 1u);
                            const __m512 v = _mm512_maskz_loadu_ps(mk, src + i * Wo + j0);
                            sum = _mm512_add_ps(sum, v);
                            _mm256_mask_storeu_epi16(dya + o * G + b * L + i * Wp + j0, mk, (__m256i)_mm512_cvtneps_pbh(v));
                        }
                    acc[KK * CoP * CiP + o] += vsum({sum});
                }
            }
            for (int64_t t = 0; t < KK; t++) {
                const int64_t off = (t / p.KW) * Wp + t % p.KW;
                for (int64_t o0 = 0; o0 < CoP; o0 += 32)
                    for (int64_t ci = 0; ci < CiP; ci += 32) {
                        float* c = acc + (t * CoP + o0) * CiP + ci;  // C tiles: rows o, columns c
                        _tile_loadd(0, c, CiP * 4);
                        _tile_loadd(1, c + 16, CiP * 4);
                        _tile_loadd(2, c + 16 * CiP, CiP * 4);
                        _tile_loadd(3, c + 16 * CiP + 16, CiP * 4);
                        for (int64_t g0 = 0; g0 < n * L; g0 += 32) {
                            const int64_t s = g0 + off, par = s & 1;
                            const bf16* xb = xv + par * par_stride + (ci / 16) * cb_stride + (s - par) / 2 * 32;
                            _tile_loadd(4, dya + o0 * G + g0, G * 2);
                            _tile_loadd(5, dya + (o0 + 16) * G + g0, G * 2);
                            _tile_loadd(6, xb, 64);
                            _tile_loadd(7, xb + cb_stride, 64);
                            _tile_dpbf16ps(0, 4, 6);
                            _tile_dpbf16ps(1, 4, 7);
                            _tile_dpbf16ps(2, 5, 6);
                            _tile_dpbf16ps(3, 5, 7);
                        }
                        _tile_stored(0, c, CiP * 4);
                        _tile_stored(1, c + 16, CiP * 4);
                        _tile_stored(2, c + 16 * CiP, CiP * 4);
                        _tile_stored(3, c + 16 * CiP + 16, CiP * 4);
                    }
            }
        }
        _tile_release();
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t o = 0; o < p.Cout; o++) {  // sum the threads' copies into dw (Cout, Cin, KH, KW) and dbias
            for (int64_t c = 0; c < p.Cin; c++)
                for (int64_t t = 0; t < KK; t++) {
                    float s = 0;
                    for (int u = 0; u < nt; u++) s += accs[size_t(u)][(t * CoP + o) * CiP + c];
                    dw[(o * p.Cin + c) * KK + t] += s;
                }
            if (dbias) {
                float s = 0;
                for (int u = 0; u < nt; u++) s += accs[size_t(u)][KK * CoP * CiP + o];
                dbias[o] += s;
            }
        }
    }
}

}  // namespace isa_amx
#pragma GCC pop_options

void amx_conv(const AmxConv& a, const float* in, const float* w, float* out) { isa_amx::conv(a, in, w, out); }
void amx_conv_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias) {
    isa_amx::backward_weight(p, x, dy, dw, dbias);
}

}  // namespace dl::conv_detail
