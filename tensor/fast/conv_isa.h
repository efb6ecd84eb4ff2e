// The interface between conv.cpp (which plans a convolution: layouts, weight packing, threads) and
// the SIMD kernels of conv_kernels.h, built once per instruction set (conv_avx512.cpp,
// conv_avx2.cpp, conv_portable.cpp). Internal to tensor/; nothing outside includes it.
//
// "Blocked" layout: an image of C channels stored as (ceil(C/16), Hp, Wp, 16): channel blocks of
// 16, pixels of a block in row-major order, the 16 channels of a pixel adjacent (oneDNN's
// nChw16c). The image sits at rows [pt, pt+H) and columns [pl, pl+W) of the Hp x Wp grid; the
// border and the channels past C are zero, so kernels read padding without bounds checks.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tensor/conv.h"
#include "tensor/cpu.h"

namespace dl::conv_detail {

// One tile of a direct convolution: R output pixels of one row x NV*16 output channels,
//   out[o][j] (+)= bias[o] + sum_{cb, tap, c} w[cb][tap][c][o] * in[cb][pixel(j) + tap_off[tap]][c]
// where pixel(j) = j * SIN pixels from `in`. Accumulators stay in registers for the whole sum; the
// tile is transposed to write NCHW rows.
struct DirectTile {
    const float* in;         // blocked input, channel block 0, the window origin of output pixel 0
    int64_t in_cb_stride;    // floats between channel blocks (Hp*Wp*16)
    int ncb, c_last;         // channel blocks, and channels used in the last one (1..16)
    const int64_t* tap_off;  // ntaps offsets in floats from a pixel's window origin
    int ntaps;
    const float* w;          // packed weights of the output block: [cb][tap][c < cn][NV*16]
    float* out;              // output channel 0, pixel 0 of the tile
    int64_t out_cstride;     // floats between output channels
    int64_t out_jstride;     // floats between output pixels (1; the stride for backward-data phases)
    int nout;                // output channels of the block that exist (1..NV*16)
    const float* bias;       // nout values, or null
    bool accumulate;         // out += tile, else out = tile
    // Stride-2 backward-data pairs two column phases of a row: the first tile parks its transposed
    // rows in pair_buf (NV*16 x 16 floats), the second interleaves them with its own and adds
    // pair_count floats to out (out_jstride 1, out at the first phase's first pixel).
    int pair = 0;            // 0: a plain tile; 1: the first of a pair; 2: the second
    float* pair_buf = nullptr;
    int pair_count = 0;
};

// Weight gradient of one (channel chunk, output block, tap), summed over pixels and images:
//   acc[c][o] += sum_{img, i, j} x[img][pixel(i*SIN, j*SIN)][c] * dy[img][o / 16][i][j][o % 16]
struct DwTile {
    const float* x;          // blocked padded input of image 0 at the chunk's first channel, tap origin
    int64_t x_img, x_row;    // floats between images, between rows (Wp*16)
    const float* dy;         // blocked dy (OB, Ho, Wo, 16) of image 0 at the tile's first output block
    int64_t dy_img, dy_ob;   // floats between images, between output blocks (Ho*Wo*16)
    int64_t nimg, Ho, Wo;
    float* acc;              // (RC, NV*16), accumulated
    int64_t acc_ld;          // floats between rows of acc
};

// ---- 3x3, stride 1, pad 1 with a single channel on one side (conv_in: Cin = 1, conv_out: Cout = 1) ----
// The channel-blocked tiles would waste 15 of 16 lanes here, so these kernels vectorize over 16
// pixels of a row instead, on NCHW planes. A "padded plane" is one channel with a zero border of 1
// (row stride in_row), readable 16 floats past the end of every row.

// One input channel, many outputs (conv_in forward; conv_out backward-data with the kernel rotated):
//   out[o][j] (+)= bias[o] + sum_{p,q<3} w[o][3p+q] * in[p*in_row + j + q]     for one output row
struct OneToMany {
    const float* in;          // padded plane at the window origin of the row's first pixel
    int64_t in_row;
    const float* w;           // (nout, 9)
    float* out;               // output channel 0 of the row
    int64_t out_cstride, width;
    int nout;
    const float* bias;        // or null
    bool accumulate;
};

// Many input channels, one output (conv_out forward; conv_in backward-data with the kernel rotated):
//   out[i][j] (+)= bias + sum_{c, p, q} w[c][3p+q] * in[c][i+p-1][j+q-1]    (zero outside the image)
// read straight from the unpadded NCHW planes with lane masks at the borders.
struct ManyToOne {
    const float* in;          // (C, H, W) of one image
    int64_t C, H, W;
    const float* w;           // (C, 9)
    float* out;               // (H, W)
    float bias;
    bool accumulate;
};

// Weight gradient, all 9 taps of each channel in registers:
//   acc[m][t] += sum_{img, i, j} many[img][m][i][j] * single[img][(i, j) + off[t]]
// conv_in: many = dy, single = padded x, off = (p, q); conv_out: many = x, single = padded dy,
// off = (2-p, 2-q).
struct DwSingle {
    const float* many;        // (M, H, W) planes of image 0
    int64_t many_img;         // floats between images
    const float* single;      // padded plane of image 0, at padded (0, 0)
    int64_t single_img, single_row;
    const int64_t* off;       // 9 offsets in floats
    int64_t M, nimg, H, W;
    float* acc;               // (M, 9), accumulated
    float* bias_acc;          // (M): += sum of each many-side channel (its bias gradient), or null
};

// ---- 1x1 stride 1 (pointwise): GEMMs on NCHW planes without packing the pixels ----

// y (M, P) (+)= bias + W (M, K) x (K, P) for one image, tiles of MR output channels x 32 pixels.
// w is packed once per call in panels of MR rows: [M / MR][K][MR], zero past M.
struct Pointwise {
    const float* w;
    const float* x;           // (K, P)
    float* y;                 // (M, P)
    int64_t M, K, P;
    const float* bias;        // or null
    bool accumulate;
};

// acc[i][j] += sum_{img, p} a[img][i][p] * b[img][j][p]  (a weight gradient dy x^T), i < MA, j < MB.
struct PointwiseDw {
    const float* a;           // (MA, P) of image 0
    const float* b;           // (MB, P) of image 0
    int64_t a_img, b_img;     // floats between images
    int64_t MA, MB, P, nimg;
    float* acc;               // (MA, MB), accumulated
    float* bias_acc;          // (MA): += sum of each a row (the bias gradient), or null
};

// ---- Winograd F(4x4, 3x3) for stride-1 3x3 convolutions (conv_winograd.cpp, winograd_kernels.h) ----
// A 6x6 input patch d and a 3x3 kernel g give a 4x4 output tile y = A^T [U (.) V] A, with
// U = G g G^T and V = B^T d B (36 coefficients each, xi = 6k + l). Over channels the elementwise
// product becomes 36 independent matrix products M_xi = V_xi U_xi. T tiles are handled per call;
// tile_off[t] is the floats from a buffer's channel block 0 to tile t's top-left pixel.

// V[xi][cb][t][16] = B^T d B of each tile's 6x6 patch, per channel block.
struct WinoInput {
    const float* in;          // blocked, zero-padded input (ncb, Hp, Wp, 16) of one or more images
    int64_t in_cb, in_row;    // floats between channel blocks, between rows (Wp*16)
    const int64_t* tile_off;
    int64_t T;
    int ncb;
    float* v;                 // (36, ncb, T, 16)
    int64_t v_xi;             // floats between the 36 planes (at least ncb*T*16)
};

// W[xi][t][o] = A dy A^T of each 4x4 tile of the output gradient (for the weight gradient).
struct WinoGradOutput {
    const float* dy;          // blocked (nob, 4*th, 4*tw, 16), zero past the image
    int64_t dy_ob, dy_row;
    const int64_t* tile_off;
    int64_t T;
    int nob;
    float* w;                 // (36, T, Op)
    int64_t w_xi, Op;         // floats between the 36 planes (at least T*Op); 16*nob
};

// M[xi][t][o] = sum_c V[xi][c/16][t][c%16] U[xi][c][o] for the 36 coefficients.
struct WinoGemm {
    const float* v;           // (36, ncb, T, 16)
    const float* u;           // (36, 16*ncb, Op), rows past the channels zero
    float* m;                 // (36, T, Op)
    int64_t v_xi, u_xi, m_xi, T, Op;
    int ncb, c_last;          // channel blocks, and channels used in the last one (1..16)
};

// y = A^T M A (+ bias) of each tile into a blocked output (nob, 4*th, 4*tw, 16).
struct WinoOutput {
    const float* m;           // (36, T, Op)
    int64_t m_xi, Op;
    const int64_t* tile_off;
    int64_t T;
    int nob;
    const float* bias;        // Op values (zero past Cout), or null
    float* out;
    int64_t out_ob, out_row;
};

// acc[xi][c][o] += sum_t V[xi][c/16][t][c%16] W[xi][t][o] (the weight gradient before G^T . G).
struct WinoDw {
    const float* v;           // (36, ncb, T, 16)
    const float* w;           // (36, T, Op)
    float* acc;               // (36, 16*ncb, Op)
    int64_t v_xi, w_xi, acc_xi, T, Op;
    int ncb, c_last;
};

struct ConvIsa {
    const char* name;
    int acc_regs;  // V16 accumulators a tile may hold: R * NV <= acc_regs (and R <= 14)
    void (*to_blocked)(const float* src, int64_t C, int64_t H, int64_t W, float* dst, int64_t Hp, int64_t Wp,
                       int64_t pt, int64_t pl, float* csum);  // csum: null, or += per-channel sums
    void (*direct_tile)(const DirectTile& a, int R, int NV, int SIN);  // NV in {1, 2, 4}, SIN in {1, 2}
    void (*dw_tile)(const DwTile& a, int RC, int NV, int SIN);         // RC <= 8, NV in {1, 2, 3}
    void (*one_to_many)(const OneToMany& a);
    void (*many_to_one)(const ManyToOne& a);
    void (*dw_single)(const DwSingle& a);
    void (*sum_planes)(const float* src, int64_t n, int64_t P, float* out);  // out[i] += sum of plane i
    int pointwise_mr;  // output channels per Pointwise tile (the packing of w)
    void (*pointwise)(const Pointwise& a);
    void (*pointwise_dw)(const PointwiseDw& a);
    void (*wino_input)(const WinoInput& a);
    void (*wino_grad_output)(const WinoGradOutput& a);
    void (*wino_gemm)(const WinoGemm& a);
    void (*wino_output)(const WinoOutput& a);
    void (*wino_dw)(const WinoDw& a);
    // blocked (ceil(C/16), Hp, Wp, 16) -> NCHW (C, H, W), the crop [0, H) x [0, W); = or +=
    void (*from_blocked)(const float* src, int64_t Hp, int64_t Wp, float* dst, int64_t C, int64_t H, int64_t W,
                         bool accumulate);
};

// ---- bf16 operands, float32 sums, on AMX tiles (conv_amx.cpp; used under Precision::BF16) ----

// out (B, Co, Ho, Wo) (+)= bias + the stride-1 convolution of in (B, Ci, Hi, Wi), zero-padded by pt
// rows and pl columns in front (Ho + KH - 1 and Wo + KW - 1 grid pixels in all), with
//   wt(o, c, p, q) = w[o][c][p][q]                        (forward: w is (Co, Ci, KH, KW))
//   wt(o, c, p, q) = w[c][o][KH-1-p][KW-1-q]  with flip    (backward-data: w is (Ci, Co, KH, KW))
struct AmxConv {
    int64_t B, Ci, Hi, Wi, Co, Ho, Wo, KH, KW, pt, pl;
    bool flip;
    const float* bias;  // Co values, or null
    bool accumulate;    // out += conv, else out = conv
};
void amx_conv(const AmxConv& a, const float* in, const float* w, float* out);
// dw (Cout, Cin, KH, KW) += sum over images and pixels of x (x) dy, dbias (or null) += sums of dy
// (float32), for p.stride == 1 and p.pad < the kernel size.
void amx_conv_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias);

// Winograd F(4x4, 3x3) (conv_winograd.cpp): the three passes of a 3x3, stride-1, pad-1 convolution,
// same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weight.
bool winograd_applies(const Conv2dParams& p);  // 3x3, stride 1, pad 1, more than one channel each side
void winograd_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void winograd_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool accumulate);
// dw (+ dbias) always; dx (=, or += with accumulate) too unless it is null, from the same copies of dy
void winograd_backward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* dy, const float* w, float* dx,
                       bool accumulate, float* dw, float* dbias);

const ConvIsa& conv_isa_avx512();
const ConvIsa& conv_isa_avx2();
const ConvIsa& conv_isa_portable();

constexpr int kMaxTileR = 14;  // longest row tile of direct_tile

// Each thread sums its images into a private buffer of `len` floats, body(acc, b0, b1) doing one
// thread's share; then rows of `row` floats of the buffers are summed over the threads and handed
// to add(row index, summed row) (rows split over the threads).
template <class Body, class Add>
inline void reduce_over_images(int64_t B, int64_t len, int64_t row, const Body& body, const Add& add) {
    const int nt = int(std::max<int64_t>(1, std::min<int64_t>(team_threads(), B)));
    std::vector<float*> bufs(static_cast<size_t>(nt));
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        float* acc = bufs[size_t(t)] = scratch(4, size_t(len));
        std::fill(acc, acc + len, 0.f);
        body(acc, B * t / nt, B * (t + 1) / nt);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t r = 0; r < len / row; r++) {
            float* sum = bufs[0] + r * row;
            for (int u = 1; u < nt; u++)
                for (int64_t i = 0; i < row; i++) sum[i] += bufs[size_t(u)][r * row + i];
            add(r, sum);
        }
    }
}

}  // namespace dl::conv_detail
