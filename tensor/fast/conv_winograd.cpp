// Winograd F(4x4, 3x3) for the stride-1, pad-1 3x3 convolutions in float32 (Precision::WINOGRAD):
// the same three passes as the direct kernels of conv.cpp with 4x fewer multiplies on a 28x28
// image, paid for with transforms and with a larger rounding error (tests/test_kernels.cpp states it).
//
// The algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).
// One output row of four pixels of a 3-tap correlation, y_i = sum_q g_q d_{i+q}, is the polynomial
// product evaluated at the points 0, 1, -1, 2, -2 and infinity and interpolated back:
//   y = A^T [ (G g) (.) (B^T d) ]          d: 6 inputs, g: 3 taps, y: 4 outputs, (.) elementwise
//
//   B^T = | 4  0 -5  0  1  0 |    G = |  1/4     0     0  |    A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |        | -1/6  -1/6  -1/6  |          | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |        | -1/6   1/6  -1/6  |          | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |        | 1/24  1/12   1/6  |          | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |        | 1/24 -1/12   1/6  |
//         | 0  4  0 -5  0  1 |        |   0     0     1   |
//
// Nested in both dimensions, a 4x4 output tile from a 6x6 patch: y = A^T [U (.) V] A with
// U = G g G^T and V = B^T d B. Over channels, for each of the 36 coefficients xi:
//   M_xi[t][o] = sum_c V_xi[t][c] U_xi[c][o]      (a matrix product: tiles x Cin times Cin x Cout)
// which is 36 * Cin * Cout multiply-adds per tile of 16 outputs, against 9 * 16 * Cin * Cout directly.
//
// Backward, from the same linear map (the transposes, coefficient by coefficient):
//  * To the input: the adjoint of a stride-1 correlation is the correlation of dy with the kernel
//    rotated by 180 degrees and its channels swapped (pad 2 - pad = 1), so it is this forward pass
//    again, with U built from w[o][c][2-p][2-q] and dx accumulated.
//  * To the weight: y_tile = A^T (U (.) V) A is linear in U, so dU = (A dY A^T) (.) V for a tile's
//    4x4 output gradient dY, summed over tiles: dU_xi[c][o] = sum_t V_xi[t][c] W_xi[t][o] with
//    W = A dY A^T, again 36 matrix products, now with the tiles as the long sum. Then
//    U = G g G^T gives dg = G^T dU G, once per call in double.
//
// Tiles past the image's edge read the zero padding and write into a blocked output that is
// cropped when converted back to NCHW, so any H and W work. The input is copied once into the
// zero-padded blocked layout (conv_isa.h), the output gathered in a blocked buffer; tiles go in
// groups of T, sized so that a group's V and M stay in the L2 cache.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "tensor/fast/conv_isa.h"
#include "tensor/cpu.h"

namespace dl::conv_detail {

bool winograd_applies(const Conv2dParams& p) {
    return p.KH == 3 && p.KW == 3 && p.stride == 1 && p.pad == 1 && p.Cin > 1 && p.Cout > 1;
}

namespace {

constexpr double kG[6][3] = {{1 / 4., 0, 0},          {-1 / 6., -1 / 6., -1 / 6.}, {-1 / 6., 1 / 6., -1 / 6.},
                             {1 / 24., 1 / 12., 1 / 6.}, {1 / 24., -1 / 12., 1 / 6.}, {0, 0, 1}};

// The tiling of one convolution: Ci input channels of H x W (padded by 1), Co outputs of H x W.
struct Plan {
    int64_t Ci, H, W, Co;    // the convolution
    int64_t th, tw;          // tiles down and across: ceil(H / 4), ceil(W / 4)
    int64_t Hp, Wp;          // the blocked input grid: (4 th + 2) x (4 tw + 2), the image at (1, 1)
    int64_t ncb, nob, Cip, Op;  // channel blocks of 16 in and out, and the channel counts they hold
    int64_t ximg, yimg;      // floats of one image's blocked input (ncb, Hp, Wp, 16) and output (nob, 4th, 4tw, 16)
    int64_t chunk;           // images converted to blocked layout at a time
    int64_t T;               // tiles per group
    int64_t v_xi, m_xi;      // floats between the 36 planes of V (ncb, T, 16) and of M or W (T, Op): a cache
                             // line more than a plane, so that the 36 stores of a tile fall in different sets
    Plan(int64_t Ci_, int64_t H_, int64_t W_, int64_t Co_) : Ci(Ci_), H(H_), W(W_), Co(Co_) {
        th = (H + 3) / 4, tw = (W + 3) / 4, Hp = 4 * th + 2, Wp = 4 * tw + 2;
        ncb = (Ci + 15) / 16, nob = (Co + 15) / 16, Cip = 16 * ncb, Op = 16 * nob;
        ximg = ncb * Hp * Wp * 16, yimg = nob * 16 * th * tw * 16;
        chunk = std::max<int64_t>(1, (32 << 10) / (ximg + yimg));           // about 128 KiB of images
        // V and M of a group: about 256 KiB, but at least 16 tiles, a 14x14 image's: each group reads
        // all 36 transformed kernels (590 KB at 64 channels, more than L2), and groups of 8 or 14
        // read them twice per image (64 and 128 channels: the reference U-Net's step +2-3%)
        T = std::clamp<int64_t>((64 << 10) / (36 * (Cip + Op)), 16, 64);
        v_xi = ncb * T * 16 + 16, m_xi = T * Op + 16;
    }
    // floats from channel block 0 of the chunk's buffers to tile t's first pixel, for the tiles of n images
    void tile_offsets(int64_t n, std::vector<int64_t>& in, std::vector<int64_t>& out) const {
        in.clear(), out.clear();
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < th; i++)
                for (int64_t j = 0; j < tw; j++) {
                    in.push_back(b * ximg + (4 * i * Wp + 4 * j) * 16);
                    out.push_back(b * yimg + (4 * i * 4 * tw + 4 * j) * 16);
                }
    }
};

// U[xi][c][o] = (G g G^T)[k][l] for the 3x3 kernel g(p, q) = wt(o, c, p, q); (36, Cip, Op), zero
// past Ci and Co. Computed in double, rounded once; written a row of o at a time (a store per
// (o, c) to each of the 36 planes would hit the same cache sets, Cip*Op*4 bytes apart).
template <class F>
void transform_weights(float* u, int64_t Ci, int64_t Co, int64_t Cip, int64_t Op, const F& wt) {
    if (Ci < Cip || Co < Op) std::fill(u, u + 36 * Cip * Op, 0.f);
#pragma omp parallel for schedule(static) num_threads(team_threads(Ci, 4))
    for (int64_t c = 0; c < Ci; c++) {
        std::vector<float> row(size_t(36 * Co));  // (36, Co) of this input channel
        for (int64_t o = 0; o < Co; o++) {
            double gg[6][3];  // G g
            for (int k = 0; k < 6; k++)
                for (int q = 0; q < 3; q++) gg[k][q] = kG[k][0] * wt(o, c, 0, q) + kG[k][1] * wt(o, c, 1, q) + kG[k][2] * wt(o, c, 2, q);
            for (int k = 0; k < 6; k++)
                for (int l = 0; l < 6; l++)
                    row[size_t((6 * k + l) * Co + o)] = float(gg[k][0] * kG[l][0] + gg[k][1] * kG[l][1] + gg[k][2] * kG[l][2]);
        }
        for (int xi = 0; xi < 36; xi++) std::copy_n(row.data() + xi * Co, Co, u + (xi * Cip + c) * Op);
    }
}

// out (n images, NCHW) (+)= bias_p + the correlation of the n images already in the blocked layout
// at xb with the kernel transformed into u, a group of tiles at a time: input transform, the 36
// products, output transform into yb, then back to NCHW. v, m, yb: the caller's scratch.
void convolve_blocked(const ConvIsa& k, const Plan& pl, const float* u, const float* bias_p, const float* xb, int64_t n,
                      float* v, float* m, float* yb, float* out, bool accumulate) {
    std::vector<int64_t> in_off, out_off;
    pl.tile_offsets(n, in_off, out_off);
    const int64_t ntiles = int64_t(in_off.size());
    for (int64_t t0 = 0; t0 < ntiles; t0 += pl.T) {
        const int64_t T = std::min(pl.T, ntiles - t0);
        k.wino_input({xb, pl.Hp * pl.Wp * 16, pl.Wp * 16, in_off.data() + t0, T, int(pl.ncb), v, pl.v_xi});
        k.wino_gemm({v, u, m, pl.v_xi, pl.Cip * pl.Op, pl.m_xi, T, pl.Op, int(pl.ncb), int(pl.Ci - 16 * (pl.ncb - 1))});
        k.wino_output({m, pl.m_xi, pl.Op, out_off.data() + t0, T, int(pl.nob), bias_p, yb, 16 * pl.th * pl.tw * 16,
                       4 * pl.tw * 16});
    }
    for (int64_t b = 0; b < n; b++)
        k.from_blocked(yb + b * pl.yimg, 4 * pl.th, 4 * pl.tw, out + b * pl.Co * pl.H * pl.W, pl.Co, pl.H, pl.W, accumulate);
}

// out (B, Co, H, W) (+)= bias + the 3x3 correlation of in (B, Ci, H, W), pad 1, whose kernel is
// already transformed into u.
void winograd_conv(const ConvIsa& k, const Plan& pl, int64_t B, const float* u, const float* bias, const float* in,
                   float* out, bool accumulate) {
    const int64_t xn = pl.Ci * pl.H * pl.W, yn = pl.Co * pl.H * pl.W;  // floats of an NCHW image
    std::vector<float> bias_p;  // Op values, zero past Co
    if (bias) bias_p.assign(bias, bias + pl.Co), bias_p.resize(size_t(pl.Op), 0.f);
    // each thread its share of the images, in chunks (chunks dealt out to threads left one idle for
    // a chunk's time where they did not divide evenly: 11 chunks of 6 images at 7x7)
#pragma omp parallel num_threads(team_threads(B))
    {
        float* xb = scratch(1, size_t(pl.chunk * pl.ximg));
        float* v = scratch(2, size_t(36 * pl.v_xi));
        float* m = scratch(3, size_t(36 * pl.m_xi));
        float* yb = scratch(5, size_t(pl.chunk * pl.yimg));
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads(), first = B * t / nt;
        const int64_t share = B * (t + 1) / nt - first, nch = (share + pl.chunk - 1) / pl.chunk;
        for (int64_t i = 0; i < nch; i++) {  // nch chunks of as even sizes as may be
            const int64_t b0 = first + share * i / nch, n = first + share * (i + 1) / nch - b0;
            for (int64_t b = 0; b < n; b++)
                k.to_blocked(in + (b0 + b) * xn, pl.Ci, pl.H, pl.W, xb + b * pl.ximg, pl.Hp, pl.Wp, 1, 1, nullptr);
            convolve_blocked(k, pl, u, bias ? bias_p.data() : nullptr, xb, n, v, m, yb, out + b0 * yn, accumulate);
        }
    }
}

// The input gradient's kernel: w rotated by 180 degrees with its channels swapped, transformed for
// the plan pd (dy's channels in, dx's out), into scratch slot 0.
float* transform_rotated(const Conv2dParams& p, const Plan& pd, const float* w) {
    float* u = scratch(0, size_t(36 * pd.Cip * pd.Op));
    transform_weights(u, p.Cout, p.Cin, pd.Cip, pd.Op,
                      [&](int64_t c, int64_t o, int i, int j) { return double(w[((o * p.Cin + c) * 3 + 2 - i) * 3 + 2 - j]); });
    return u;
}

}  // namespace

void winograd_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
    const Plan pl(p.Cin, p.H, p.W, p.Cout);
    float* u = scratch(0, size_t(36 * pl.Cip * pl.Op));
    transform_weights(u, p.Cin, p.Cout, pl.Cip, pl.Op,
                      [&](int64_t o, int64_t c, int i, int j) { return double(w[((o * p.Cin + c) * 3 + i) * 3 + j]); });
    winograd_conv(k, pl, p.B, u, bias, x, y, false);
}

// dy's channels are the inputs, dx's the outputs; the kernel rotated by 180 degrees
void winograd_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool accumulate) {
    const Plan pd(p.Cout, p.H, p.W, p.Cin);
    winograd_conv(k, pd, p.B, transform_rotated(p, pd, w), nullptr, dy, dx, accumulate);
}

// Both gradients in one pass over the images when dx is given (the weight's alone when it is null):
// each chunk of dy is copied into the padded blocked layout once and serves the input gradient (as
// the input of the rotated-kernel forward) and the weight gradient (its 4x4 tiles, one pixel in
// from the padding), while it is in cache; separately, each pass made its own copy.
void winograd_backward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* dy, const float* w,
                       float* dx, bool accumulate, float* dw, float* dbias) {
    const Plan pw(p.Cin, p.H, p.W, p.Cout);  // the weight gradient's: x's tiles against dy's
    const Plan pd(p.Cout, p.H, p.W, p.Cin);  // the input gradient's: dy in, dx out (same grid as pw)
    const float* u = dx ? transform_rotated(p, pd, w) : nullptr;
    const int64_t accn = 36 * pw.Cip * pw.Op;  // dU, then the bias gradient (Op)
    float* du = scratch(6, size_t(accn));
    const int64_t chunk = std::min(pw.chunk, pd.chunk);
    reduce_over_images(
        p.B, accn + pw.Op, pw.Op,
        [&](float* acc, int64_t b0, int64_t b1) {
            float* xb = scratch(1, size_t(chunk * pw.ximg));
            float* v = scratch(2, size_t(36 * std::max(pw.v_xi, pd.v_xi)));
            float* m = scratch(3, size_t(36 * std::max(pw.m_xi, pd.m_xi)));
            float* db = scratch(5, size_t(chunk * pd.ximg));  // dy, padded like an input
            float* yb = dx ? scratch(7, size_t(chunk * pd.yimg)) : nullptr;
            std::vector<int64_t> x_off, dy_off, unused;
            for (int64_t c0 = b0; c0 < b1; c0 += chunk) {
                const int64_t n = std::min(chunk, b1 - c0);
                for (int64_t b = 0; b < n; b++) {
                    k.to_blocked(x + (c0 + b) * p.Cin * p.H * p.W, p.Cin, p.H, p.W, xb + b * pw.ximg, pw.Hp, pw.Wp, 1, 1, nullptr);
                    k.to_blocked(dy + (c0 + b) * p.Cout * p.H * p.W, p.Cout, p.H, p.W, db + b * pd.ximg, pd.Hp, pd.Wp, 1, 1,
                                 acc + accn);
                }
                // the input gradient over all tiles, then the weight gradient (interleaving the two per
                // group of tiles kept both transformed kernels and twice the buffers in L2: slower)
                if (dx) convolve_blocked(k, pd, u, nullptr, db, n, v, m, yb, dx + c0 * p.Cin * p.H * p.W, accumulate);
                pw.tile_offsets(n, x_off, unused);
                pd.tile_offsets(n, dy_off, unused);  // tile t's 6x6 patch of padded dy; its 4x4 dY starts (1, 1) in
                const int64_t ntiles = int64_t(x_off.size());
                for (int64_t t0 = 0; t0 < ntiles; t0 += pw.T) {
                    const int64_t T = std::min(pw.T, ntiles - t0);
                    k.wino_input({xb, pw.Hp * pw.Wp * 16, pw.Wp * 16, x_off.data() + t0, T, int(pw.ncb), v, pw.v_xi});
                    k.wino_grad_output({db + (pd.Wp + 1) * 16, pd.Hp * pd.Wp * 16, pd.Wp * 16, dy_off.data() + t0, T,
                                        int(pw.nob), m, pw.m_xi, pw.Op});
                    k.wino_dw({v, m, acc, pw.v_xi, pw.m_xi, pw.Cip * pw.Op, T, pw.Op, int(pw.ncb),
                               int(p.Cin - 16 * (pw.ncb - 1))});
                }
            }
        },
        [&](int64_t r, const float* s) {  // r: row (xi, c) of dU, the last one the bias gradient
            if (r * pw.Op < accn) std::copy_n(s, pw.Op, du + r * pw.Op);
            else if (dbias)
                for (int64_t o = 0; o < p.Cout; o++) dbias[o] += s[o];
        });
    // dg = G^T dU G for every (o, c), reading dU a row of output channels at a time (as
    // transform_weights writes U)
#pragma omp parallel for schedule(static) num_threads(team_threads(p.Cin, 4))
    for (int64_t c = 0; c < p.Cin; c++) {
        std::vector<double> gd(size_t(p.Cout * 18), 0.0);  // (Cout, 3, 6): G^T dU of this input channel
        for (int k6 = 0; k6 < 6; k6++)
            for (int l = 0; l < 6; l++) {
                const float* row = du + ((6 * k6 + l) * pw.Cip + c) * pw.Op;
                for (int64_t o = 0; o < p.Cout; o++)
                    for (int i = 0; i < 3; i++) gd[size_t((o * 3 + i) * 6 + l)] += kG[k6][i] * double(row[o]);
            }
        for (int64_t o = 0; o < p.Cout; o++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0;
                    for (int l = 0; l < 6; l++) s += gd[size_t((o * 3 + i) * 6 + l)] * kG[l][j];
                    dw[((o * p.Cin + c) * 3 + i) * 3 + j] += float(s);
                }
    }
}

}  // namespace dl::conv_detail
