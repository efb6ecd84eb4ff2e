// The fast float32 conv2d (fast.h): plans each call and hands the inner loops to the SIMD kernels of
// conv_kernels.h. Speeds up conv2d_*_ref of tensor/conv.cpp; README.md in this folder has the ladder.
// B batch, C channels, H x W input, Ho x Wo output, k x k kernel, s stride, pad zero padding.
//
// Formulations, chosen per shape by measurement (apps/bench.cpp; single-core GFLOP/s on Zen 4,
// peak about 117, given for the shapes that decided):
//
//  * Direct, channel-blocked ("nChw16c" inside, NCHW outside) for 3x3 and other kernels, stride 1
//    and 2, any channel counts. Per image, the input is copied into a zero-padded blocked layout
//    (the 16 channels of a pixel adjacent). A register tile holds R output pixels of one row x NV*16
//    output channels (R*NV <= 28 zmm); the sum runs over input channel blocks, taps and the 16
//    channels, each step one weight-vector load per 16 outputs and one broadcast per pixel (the
//    structure of oneDNN's jit_avx512_common_conv kernel). The finished tile is transposed 16x16 in
//    registers into NCHW rows. No im2col buffer, and no lanes wasted on 7-pixel rows, where
//    vectorizing over pixels would fill 7 of 16 lanes. 100-107 GFLOP/s on every U-Net 3x3 shape;
//    the packed GEMM alone, on the per-image im2col matrices, runs at 72-77.
//  * Backward to the input: the same kernel run over dy. For stride s, dx splits into s*s phases
//    (h mod s, w mod s); each phase is a stride-1 convolution of dy with the taps that reach it (the
//    180-degree-rotated, transposed weight), added to every s-th pixel of dx. For s = 2 the two
//    column phases of a row are interleaved in registers and added to dx in one pass.
//  * Backward to the weight, direct: a tile of RC input channels x NV*16 output channels for one
//    tap, summed in registers over all pixels of a chunk of images that fits L2. Each thread takes
//    its share of the images and accumulates into its own copy of dW, summed at the end; the bias
//    gradient comes from the same transposition of dy.
//  * 1x1 stride 1 (pointwise): GEMM tiles on the NCHW planes with the weight packed once per call
//    and the pixels not packed at all (95-99), against a packed GEMM per image (58) or the direct
//    kernel with its layout changes (54); dW as lane-parallel dot products dy[b] x[b]^T (80).
//  * One input channel (conv_in) or one output channel (conv_out), 3x3 stride 1: GEMM and the
//    channel-blocked tiles would waste 15 of 16 lanes, so these vectorize over 16 pixels of a row
//    (one_to_many, many_to_one, dw_single: 70-88, against 16-50 through the channel-blocked
//    layout, and about 1/16 of the direct kernel's speed for the general path).
//  * Anything else (stride > 2) falls back to the reference loops.
//  * Precision::BF16 (cpu.h): the stride-1 convolutions with more than one channel on each side
//    (3x3 and 1x1, all three passes) go to AMX tiles instead, bf16 operands and float32 sums, as
//    implicit GEMMs over the padded width (conv_amx.cpp). 3x3 fwd+bwd about 4x the float32 kernels
//    (950-1085 GFLOP/s against 230-285 on a 2-core Xeon with AMX, FMA peak 390-430).
//  * Precision::WINOGRAD: the 3x3 stride-1 pad-1 convolutions with more than one channel on each
//    side go to Winograd F(4x4, 3x3) instead (conv_winograd.cpp), float32 with 4x fewer multiplies;
//    conv2d_backward runs its two backward passes over one blocked copy of dy.
//
// Threads: over images (each thread converts and convolves its own images), or over output rows of
// one image at a time when the batch is smaller than the team; weights are packed by the team
// first. Called inside a parallel region, everything runs on the calling thread. Scratch (cpu.h)
// slots: 0 packed weights, 1 shared blocked image, 2-3 per-thread images, 4 per-thread
// accumulators; Winograd also 5-7 (blocked outputs and dy, dU); gemm uses 6-7 (never inside a conv).
#include <omp.h>

#include <algorithm>
#include <array>
#include <functional>
#include <type_traits>
#include <vector>

#include "tensor/conv.h"
#include "tensor/cpu.h"
#include "tensor/fast/conv_isa.h"
#include "tensor/fast/fast.h"
#include "tensor/tensor.h"

namespace dl::fast {

namespace {
using namespace conv_detail;

const ConvIsa& conv_isa() {
    switch (simd_level()) {
        case SimdLevel::AVX512: return conv_isa_avx512();
        case SimdLevel::AVX2: return conv_isa_avx2();
        default: return conv_isa_portable();
    }
}

// A zero-padded grid around an H x W image: the image at rows [pt, pt+H), columns [pl, pl+W).
struct Grid {
    int64_t Hp, Wp, pt, pl;
};

// Output channels in groups of NV blocks of 16, one register tile each.
struct OGroup {
    int64_t o0;  // first channel
    int nv, n;   // blocks of 16, channels that exist
};

std::vector<OGroup> split_channels(int64_t C, const std::vector<int>& sizes) {
    std::vector<OGroup> g;
    int64_t o0 = 0;
    for (int nv : sizes) {
        g.push_back({o0, nv, int(std::min<int64_t>(16 * nv, C - o0))});
        o0 += 16 * nv;
    }
    return g;
}

int rmax(const ConvIsa& k, int nv) { return std::min(kMaxTileR, k.acc_regs / nv); }

// Direct-tile plan: output channel groups of NV in {4, 2, 1} blocks, picked to need the fewest
// tiles per row (ties to the larger NV: fewer loads per FMA).
std::vector<OGroup> plan_direct_groups(const ConvIsa& k, int64_t C, int64_t width) {
    const int64_t nb = (C + 15) / 16;
    std::vector<int> best;
    int64_t best_tiles = -1;
    for (int nv : {4, 2, 1}) {
        if (rmax(k, nv) < 1 || (nv > nb && nv > 1)) continue;
        std::vector<int> sizes;
        int64_t tiles = 0;
        for (int64_t left = nb; left > 0;) {
            int g = nv;
            while (g > left || rmax(k, g) < 1) g /= 2;
            sizes.push_back(g);
            tiles += (width + rmax(k, g) - 1) / rmax(k, g);
            left -= g;
        }
        if (best_tiles < 0 || tiles < best_tiles) best = sizes, best_tiles = tiles;
    }
    return split_channels(C, best);
}

// One output group's weights packed for direct_tile: [cb][tap][c < cn][nv*16], zero past the
// channels; wt(o, c, tap) is the weight from output channel o to input channel c at the tap.
// pack_direct_block packs input block cb of the group at dst (the group's packing).
template <class F>
void pack_direct_block(float* dst, const OGroup& g, int64_t Cin, int ntaps, int64_t cb, const F& wt) {
    const int64_t cn = std::min<int64_t>(16, Cin - 16 * cb), ld = 16 * g.nv;
    dst += cb * 16 * ntaps * ld;
    if (g.n < ld) std::fill(dst, dst + cn * ntaps * ld, 0.f);
    for (int64_t c = 0; c < cn; c++)  // input channel outer: for the backward-data weights, reads go in order
        for (int64_t o = 0; o < g.n; o++)
            for (int t = 0; t < ntaps; t++) dst[(t * cn + c) * ld + o] = wt(g.o0 + o, 16 * cb + c, t);
}
int64_t packed_direct_size(const OGroup& g, int64_t Cin, int ntaps) { return Cin * ntaps * 16 * g.nv; }

// One phase of a direct pass: a set of output pixels on a lattice, and the taps that reach them.
struct Phase {
    std::vector<int64_t> tap_off;      // floats from a pixel's window origin in the blocked input
    std::vector<const float*> wgroup;  // packed weights, one per output group
    int64_t out_off, out_row, out_col;  // output pixel (r, c) of the phase sits at out_off + r*out_row + c*out_col
    int64_t rows, cols;
    int64_t in_row;  // padded input rows per output row; the kernel's SIN is the input columns per pixel
    int sin;
    int64_t row_family = 0;  // phases of one family write the same output rows (consecutive in the list)
    int64_t col_off = 0;     // column of the phase's first pixel within an output row
};

// out[b] (+)= direct convolution of in[b] over every phase. in: (B, Ci, Hi, Wi), blocked into grid g.
// out: (B, Co, plane) with a phase's pixels placed by out_off/out_row/out_col.
struct DirectPass {
    int64_t B, Ci, Hi, Wi, Co, out_plane;
    Grid g;
    std::vector<OGroup> groups;
    std::vector<Phase> phases;
    const float* bias;
    bool accumulate;
    std::vector<std::function<void()>> pack;  // weight packing jobs, run in parallel before the convolution
};

// One row of one phase for one output group. out: the group's first channel at the phase's first
// pixel of the row; cstride: floats between output channels.
void run_direct_row(const ConvIsa& k, const DirectPass& d, const float* blk, float* out, int64_t cstride, bool accumulate,
                    const Phase& ph, size_t gi, int64_t r) {
    const OGroup& grp = d.groups[gi];
    const int64_t ntile = (ph.cols + rmax(k, grp.nv) - 1) / rmax(k, grp.nv);
    DirectTile a;
    a.in_cb_stride = d.g.Hp * d.g.Wp * 16;
    a.ncb = int((d.Ci + 15) / 16);
    a.c_last = int(d.Ci - 16 * (a.ncb - 1));
    a.tap_off = ph.tap_off.data();
    a.ntaps = int(ph.tap_off.size());
    a.w = ph.wgroup[gi];
    a.out_cstride = cstride;
    a.out_jstride = ph.out_col;
    a.nout = grp.n;
    a.bias = d.bias ? d.bias + grp.o0 : nullptr;
    a.accumulate = accumulate;
    for (int64_t t = 0, c0 = 0; t < ntile; t++) {  // near-equal tiles along the row
        const int64_t R = (ph.cols - c0) / (ntile - t);
        a.in = blk + (r * ph.in_row * d.g.Wp + c0 * ph.sin) * 16;
        a.out = out + c0 * ph.out_col;
        k.direct_tile(a, int(R), grp.nv, ph.sin);
        c0 += R;
    }
}

// Phases that write the same output rows (backward-data phases with the same h mod s).
bool same_rows(const Phase& a, const Phase& b) { return a.row_family == b.row_family; }

// The two column phases of a stride-2 backward-data row, interleaved in registers: tiles of the
// first phase park their transposed rows, the second phase's tiles over the same columns add both
// to out as contiguous 2R floats. out: the group's first channel at the row's first pixel.
bool pairable(const Phase& a, const Phase& b) {
    return a.out_col == 2 && b.out_col == 2 && a.col_off == 0 && b.col_off == 1 && b.cols <= a.cols && b.cols >= a.cols - 1;
}

void run_direct_row_pair(const ConvIsa& k, const DirectPass& d, const float* blk, float* out, const Phase& p0,
                         const Phase& p1, size_t gi, int64_t r) {
    const OGroup& grp = d.groups[gi];
    const int64_t ntile = (p0.cols + rmax(k, grp.nv) - 1) / rmax(k, grp.nv);
    alignas(64) float buf[4 * 16 * 16];  // (NV*16 channels, 16 pixels)
    DirectTile a;
    a.in_cb_stride = d.g.Hp * d.g.Wp * 16;
    a.ncb = int((d.Ci + 15) / 16);
    a.c_last = int(d.Ci - 16 * (a.ncb - 1));
    a.out_cstride = d.out_plane;
    a.out_jstride = 1;
    a.nout = grp.n;
    a.bias = nullptr;
    a.accumulate = true;
    a.pair_buf = buf;
    for (int64_t t = 0, c0 = 0; t < ntile; t++) {
        const int64_t R = (p0.cols - c0) / (ntile - t);
        for (const Phase* ph : {&p0, &p1}) {
            a.in = blk + (r * ph->in_row * d.g.Wp + c0) * 16;
            a.tap_off = ph->tap_off.data();
            a.ntaps = int(ph->tap_off.size());
            a.w = ph->wgroup[gi];
            a.pair = ph == &p0 ? 1 : 2;
            a.pair_count = int(2 * R - (c0 + R > p1.cols ? 1 : 0));  // the second phase may be a column short
            a.out = out + 2 * c0;
            k.direct_tile(a, int(R), grp.nv, 1);
        }
        c0 += R;
    }
}

void run_direct(const ConvIsa& k, const DirectPass& d, const float* in, float* out) {
    const int64_t img = (d.Ci + 15) / 16 * d.g.Hp * d.g.Wp * 16;  // floats of one blocked image
    const int nt = team_threads();
    // Work items of one image: (first phase, group, row), one per row family, so that the phases
    // sharing an output row are in one item, on one thread.
    std::vector<std::array<int64_t, 3>> items;
    for (size_t ph = 0; ph < d.phases.size(); ph++) {
        if (ph > 0 && same_rows(d.phases[ph - 1], d.phases[ph])) continue;
        for (size_t gi = 0; gi < d.groups.size(); gi++)
            for (int64_t r = 0; r < d.phases[ph].rows; r++) items.push_back({int64_t(ph), int64_t(gi), r});
    }
    // One item: every phase of its family (the stride-2 kernel store adds zeros to the other
    // phases' pixels of the row, so they must not be written by another thread meanwhile).
    auto run_item = [&](const float* blk, float* o, const std::array<int64_t, 3>& it) {
        const size_t gi = size_t(it[1]), f0 = size_t(it[0]);
        const int64_t r = it[2], o0 = d.groups[gi].o0;
        if (f0 + 1 < d.phases.size() && same_rows(d.phases[f0], d.phases[f0 + 1]) &&
            (f0 + 2 == d.phases.size() || !same_rows(d.phases[f0], d.phases[f0 + 2])) &&
            pairable(d.phases[f0], d.phases[f0 + 1]) && r < d.phases[f0 + 1].rows) {
            const Phase& f = d.phases[f0];
            return run_direct_row_pair(k, d, blk, o + o0 * d.out_plane + f.out_off + r * f.out_row, f, d.phases[f0 + 1], gi, r);
        }
        for (size_t ph = size_t(it[0]); ph < d.phases.size(); ph++) {
            const Phase& f = d.phases[ph];
            if (ph > size_t(it[0]) && !same_rows(d.phases[ph - 1], f)) break;
            if (r < f.rows) run_direct_row(k, d, blk, o + o0 * d.out_plane + f.out_off + r * f.out_row, d.out_plane,
                                           d.accumulate, f, gi, r);
        }
    };
    float* shared = d.B < nt ? scratch(1, size_t(img)) : nullptr;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(dynamic)
        for (size_t j = 0; j < d.pack.size(); j++) d.pack[j]();
        if (d.B >= nt) {
            float* blk = scratch(2, size_t(img));
#pragma omp for schedule(static)
            for (int64_t b = 0; b < d.B; b++) {
                k.to_blocked(in + b * d.Ci * d.Hi * d.Wi, d.Ci, d.Hi, d.Wi, blk, d.g.Hp, d.g.Wp, d.g.pt, d.g.pl, nullptr);
                for (const auto& it : items) run_item(blk, out + b * d.Co * d.out_plane, it);
            }
        } else {
            for (int64_t b = 0; b < d.B; b++) {
#pragma omp single
                k.to_blocked(in + b * d.Ci * d.Hi * d.Wi, d.Ci, d.Hi, d.Wi, shared, d.g.Hp, d.g.Wp, d.g.pt, d.g.pl, nullptr);
#pragma omp for schedule(static)
                for (size_t i = 0; i < items.size(); i++) run_item(shared, out + b * d.Co * d.out_plane, items[i]);
            }
        }
    }
}

bool direct_ok(const Conv2dParams& p) { return (p.stride == 1 || p.stride == 2) && p.pad < p.KH && p.pad < p.KW; }
bool is_1x1(const Conv2dParams& p) { return p.KH == 1 && p.KW == 1 && p.stride == 1 && p.pad == 0; }
bool is_3x3_same(const Conv2dParams& p) { return p.KH == 3 && p.KW == 3 && p.stride == 1 && p.pad == 1; }

Grid forward_grid(const Conv2dParams& p) {
    return {std::max(p.pad + p.H, (p.Ho() - 1) * p.stride + p.KH), std::max(p.pad + p.W, (p.Wo() - 1) * p.stride + p.KW),
            p.pad, p.pad};
}

// ---- forward ----

void direct_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias,
                    float* y) {
    DirectPass d{p.B, p.Cin, p.H, p.W, p.Cout, p.Ho() * p.Wo(), forward_grid(p), {}, {}, bias, false, {}};
    d.groups = plan_direct_groups(k, p.Cout, p.Wo());
    Phase ph;
    for (int64_t i = 0; i < p.KH; i++)
        for (int64_t j = 0; j < p.KW; j++) ph.tap_off.push_back((i * d.g.Wp + j) * 16);
    const int ntaps = int(ph.tap_off.size());
    int64_t packed = 0;
    for (const OGroup& g : d.groups) packed += packed_direct_size(g, p.Cin, ntaps);
    float* wp = scratch(0, size_t(packed));
    const int64_t KK = p.KH * p.KW;
    for (const OGroup& g : d.groups) {
        ph.wgroup.push_back(wp);
        for (int64_t cb = 0; cb < (p.Cin + 15) / 16; cb++)
            d.pack.push_back([=, &p] {
                pack_direct_block(wp, g, p.Cin, ntaps, cb, [&](int64_t o, int64_t c, int t) { return w[(o * p.Cin + c) * KK + t]; });
            });
        wp += packed_direct_size(g, p.Cin, ntaps);
    }
    ph.out_off = 0, ph.out_row = p.Wo(), ph.out_col = 1, ph.rows = p.Ho(), ph.cols = p.Wo();
    ph.in_row = p.stride, ph.sin = int(p.stride);
    d.phases.push_back(std::move(ph));
    run_direct(k, d, x, y);
}

// A zero-padded copy (border 1, 16 floats of slack past each row) of the plane src (H, W).
int64_t padded_row(int64_t W) { return W + 2 + 16; }
int64_t padded_plane(int64_t H, int64_t W) { return (H + 2) * padded_row(W) + 16; }
void pad_plane(const float* src, int64_t H, int64_t W, float* dst) {
    const int64_t Wp = padded_row(W);
    std::fill(dst, dst + padded_plane(H, W), 0.f);
    for (int64_t h = 0; h < H; h++) std::copy_n(src + h * W, W, dst + (h + 1) * Wp + 1);
}

// y (B, Cout, H, W) from a single input channel: rows of 16 pixels x 8 output channels over a
// padded copy of each image.
void cin1_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++) {
        float* xp = scratch(2, size_t(padded_plane(p.H, p.W)));
        pad_plane(x + b * p.H * p.W, p.H, p.W, xp);
        OneToMany a{nullptr, padded_row(p.W), w, nullptr, p.H * p.W, p.W, int(p.Cout), bias, false};
        for (int64_t i = 0; i < p.H; i++) {
            a.in = xp + i * a.in_row;
            a.out = y + b * p.Cout * p.H * p.W + i * p.W;
            k.one_to_many(a);
        }
    }
}

// y (B, 1, H, W) = bias + sum over input channels, straight from the NCHW planes.
void cout1_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++)
        k.many_to_one({x + b * p.Cin * p.H * p.W, p.Cin, p.H, p.W, w, y + b * p.H * p.W, bias ? bias[0] : 0.f, false});
}

// W (M, K) as pointwise panels: [M / MR][K][MR], zero past M. wt(o, c) gives W[o][c].
template <class F>
float* pack_pointwise(const ConvIsa& k, int64_t M, int64_t K, const F& wt) {
    const int mr = k.pointwise_mr;
    const int64_t Mp = (M + mr - 1) / mr * mr;
    float* wp = scratch(0, size_t(Mp * K));
    for (int64_t o0 = 0; o0 < Mp; o0 += mr)
        for (int64_t c = 0; c < K; c++)
            for (int i = 0; i < mr; i++) wp[o0 * K + c * mr + i] = o0 + i < M ? wt(o0 + i, c) : 0.f;
    return wp;
}

// 1x1: y[b] (Cout, HW) = W (Cout, Cin) x[b] (Cin, HW) + bias, per image, W packed once.
void pointwise_forward(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* w, const float* bias,
                       float* y) {
    const int64_t HW = p.H * p.W;
    const float* wp = pack_pointwise(k, p.Cout, p.Cin, [&](int64_t o, int64_t c) { return w[o * p.Cin + c]; });
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++)
        k.pointwise({wp, x + b * p.Cin * HW, y + b * p.Cout * HW, p.Cout, p.Cin, HW, bias, false});
}

// Precision::BF16 takes the stride-1 convolutions with more than one channel on each side (conv_in
// and conv_out keep their float32 kernels: a K of one channel would fill 1 of 32 bf16 lanes).
bool bf16_conv(const Conv2dParams& p) {
    return precision() == Precision::BF16 && p.stride == 1 && p.pad < p.KH && p.pad < p.KW && p.Cin > 1 && p.Cout > 1;
}

// Precision::WINOGRAD takes the 3x3 stride-1 pad-1 convolutions with more than one channel on each side.
bool winograd_conv(const Conv2dParams& p) { return precision() == Precision::WINOGRAD && winograd_applies(p); }

void fast_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
    if (bf16_conv(p))
        return amx_conv({p.B, p.Cin, p.H, p.W, p.Cout, p.Ho(), p.Wo(), p.KH, p.KW, p.pad, p.pad, false, bias, false}, x, w, y);
    const ConvIsa& k = conv_isa();
    if (winograd_conv(p)) return winograd_forward(k, p, x, w, bias, y);
    if (is_1x1(p)) return pointwise_forward(k, p, x, w, bias, y);
    if (is_3x3_same(p) && p.Cin == 1) return cin1_forward(k, p, x, w, bias, y);
    if (is_3x3_same(p) && p.Cout == 1) return cout1_forward(k, p, x, w, bias, y);
    if (direct_ok(p)) return direct_forward(k, p, x, w, bias, y);
    conv2d_forward_ref(p, x, w, bias, y);
}

// ---- backward to the input ----

// dx += the transposed convolution of dy, as s*s stride-1 phases (see the header comment).
void direct_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx) {
    const int64_t s = p.stride, Ho = p.Ho(), Wo = p.Wo(), KK = p.KH * p.KW;
    // dx row h = u*s + a takes kernel row i from dy row u + (a + pad - i)/s when s divides a + pad - i.
    auto reach = [&](int64_t a, int64_t i) { return ((a + p.pad - i) % s + s) % s == 0; };
    auto shift = [&](int64_t a, int64_t i) { return (a + p.pad - i) / s; };  // exact when reach()
    // padding of dy so that every shifted read stays inside the grid
    int64_t pt = 0, pb = 0, pl = 0, pr = 0;
    for (int64_t a = 0; a < s; a++)
        for (int64_t i = 0; i < p.KH; i++)
            if (reach(a, i)) {
                const int64_t rows = (p.H - a + s - 1) / s;
                pt = std::max(pt, -shift(a, i)), pb = std::max(pb, rows - 1 + shift(a, i) - (Ho - 1));
            }
    for (int64_t e = 0; e < s; e++)
        for (int64_t j = 0; j < p.KW; j++)
            if (reach(e, j)) {
                const int64_t cols = (p.W - e + s - 1) / s + (s == 2);  // a column more for paired phases
                pl = std::max(pl, -shift(e, j)), pr = std::max(pr, cols - 1 + shift(e, j) - (Wo - 1));
            }
    DirectPass d{p.B, p.Cout, Ho, Wo, p.Cin, p.H * p.W, {pt + Ho + pb, pl + Wo + pr, pt, pl}, {}, {}, nullptr, true, {}};
    d.groups = plan_direct_groups(k, p.Cin, (p.W + s - 1) / s);
    float* wp = scratch(0, size_t(p.Cin + 16 * 4) * size_t(p.Cout * KK));
    for (int64_t a = 0; a < s; a++)
        for (int64_t e = 0; e < s; e++) {
            Phase ph;
            std::vector<int64_t> taps;  // kernel index i*KW + j of each tap of the phase
            for (int64_t i = 0; i < p.KH; i++)
                for (int64_t j = 0; j < p.KW; j++)
                    if (reach(a, i) && reach(e, j)) {
                        taps.push_back(i * p.KW + j);
                        ph.tap_off.push_back(((shift(a, i) + pt) * d.g.Wp + shift(e, j) + pl) * 16);
                    }
            ph.rows = (p.H - a + s - 1) / s, ph.cols = (p.W - e + s - 1) / s;
            if (taps.empty() || ph.rows <= 0 || ph.cols <= 0) continue;
            for (const OGroup& g : d.groups) {
                ph.wgroup.push_back(wp);
                for (int64_t ob = 0; ob < (p.Cout + 15) / 16; ob++)
                    d.pack.push_back([=, &p] {  // output channel c of dx, input channel o of dy
                        pack_direct_block(wp, g, p.Cout, int(taps.size()), ob, [&](int64_t c, int64_t o, int t) {
                            return w[(o * p.Cin + c) * KK + taps[size_t(t)]];
                        });
                    });
                wp += packed_direct_size(g, p.Cout, int(taps.size()));
            }
            ph.out_off = a * p.W + e, ph.out_row = s * p.W, ph.out_col = s, ph.row_family = a, ph.col_off = e;
            ph.in_row = 1, ph.sin = 1;
            d.phases.push_back(std::move(ph));
        }
    run_direct(k, d, dy, dx);
}

// The 3x3 kernel rotated by 180 degrees, per channel: (n, 9) -> (n, 9), tap t -> 8 - t.
float* rotated_3x3(const float* w, int64_t n) {
    float* r = scratch(0, size_t(n * 9));
    for (int64_t c = 0; c < n; c++)
        for (int t = 0; t < 9; t++) r[c * 9 + t] = w[c * 9 + 8 - t];
    return r;
}

// dx (B, 1, H, W) (+)= sum over the output channels of dy with the rotated kernel.
void cin1_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool acc) {
    const float* wr = rotated_3x3(w, p.Cout);
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++)
        k.many_to_one({dy + b * p.Cout * p.H * p.W, p.Cout, p.H, p.W, wr, dx + b * p.H * p.W, 0.f, acc});
}

// dx (B, Cin, H, W) (+)= the rotated kernel of each input channel times a padded copy of the single dy plane.
void cout1_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool acc) {
    const float* wr = rotated_3x3(w, p.Cin);
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++) {
        float* dp = scratch(2, size_t(padded_plane(p.H, p.W)));
        pad_plane(dy + b * p.H * p.W, p.H, p.W, dp);
        OneToMany a{nullptr, padded_row(p.W), wr, nullptr, p.H * p.W, p.W, int(p.Cin), nullptr, acc};
        for (int64_t i = 0; i < p.H; i++) {
            a.in = dp + i * a.in_row;
            a.out = dx + b * p.Cin * p.H * p.W + i * p.W;
            k.one_to_many(a);
        }
    }
}

// 1x1: dx[b] (Cin, HW) (+)= W^T (Cin, Cout) dy[b] (Cout, HW).
void pointwise_backward_data(const ConvIsa& k, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool acc) {
    const int64_t HW = p.H * p.W;
    const float* wp = pack_pointwise(k, p.Cin, p.Cout, [&](int64_t c, int64_t o) { return w[o * p.Cin + c]; });
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t b = 0; b < p.B; b++)
        k.pointwise({wp, dy + b * p.Cout * HW, dx + b * p.Cin * HW, p.Cin, p.Cout, HW, nullptr, acc});
}

void fast_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx, bool acc) {
    if (bf16_conv(p))  // a forward over dy with the flipped kernel: dx[c][h][w] += w[o][c][p][q] dy[o][h+pad-p][w+pad-q]
        return amx_conv({p.B, p.Cout, p.Ho(), p.Wo(), p.Cin, p.H, p.W, p.KH, p.KW, p.KH - 1 - p.pad, p.KW - 1 - p.pad, true,
                         nullptr, acc}, dy, w, dx);
    const ConvIsa& k = conv_isa();
    if (winograd_conv(p)) return winograd_backward_data(k, p, dy, w, dx, acc);
    if (is_1x1(p)) return pointwise_backward_data(k, p, dy, w, dx, acc);
    if (is_3x3_same(p) && p.Cin == 1) return cin1_backward_data(k, p, dy, w, dx, acc);
    if (is_3x3_same(p) && p.Cout == 1) return cout1_backward_data(k, p, dy, w, dx, acc);
    // the direct kernel's stride-2 phases add into one another's pixels, and the reference adds
    if (!acc) std::fill(dx, dx + p.B * p.Cin * p.H * p.W, 0.f);
    if (direct_ok(p)) return direct_backward_data(k, p, dy, w, dx);
    conv2d_backward_data_ref(p, dy, w, dx);
}

// ---- backward to the weight ----

// dbias[o] += sum over images and pixels of dy[b][o]; threads over output channels.
void bias_grad(const ConvIsa& k, const Conv2dParams& p, const float* dy, float* dbias) {
    const int64_t P = p.Ho() * p.Wo();
#pragma omp parallel for schedule(static) num_threads(team_threads())
    for (int64_t o = 0; o < p.Cout; o++) {
        float s = 0;
        for (int64_t b = 0; b < p.B; b++) k.sum_planes(dy + (b * p.Cout + o) * P, 1, P, &s);
        dbias[o] += s;
    }
}

void direct_backward_weight(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* dy, float* dw,
                            float* dbias) {
    const Grid g = forward_grid(p);
    const int64_t Ho = p.Ho(), Wo = p.Wo(), KK = p.KH * p.KW;
    const int64_t ncb = (p.Cin + 15) / 16, nob = (p.Cout + 15) / 16, Op = 16 * nob;
    const int64_t ximg = ncb * g.Hp * g.Wp * 16, dimg = nob * Ho * Wo * 16;
    // images per chunk: blocked x and dy of a chunk fill about half of a 1 MiB L2
    const int64_t chunk = std::max<int64_t>(1, (128 << 10) / (ximg + dimg));
    // output blocks in groups of up to 3 (RC x NV accumulators), as even as possible
    const int64_t maxnv = std::max(1, std::min(3, (k.acc_regs - 4) / 8)), ng = (nob + maxnv - 1) / maxnv;
    const int rc = int(std::min<int64_t>(8, std::max(1, k.acc_regs / int((nob + ng - 1) / ng))));
    reduce_over_images(
        p.B, (KK * p.Cin + 1) * Op, Op,
        [&](float* acc, int64_t b0, int64_t b1) {  // acc (KK, Cin, Op), then the bias gradient (Op)
            float* xb = scratch(2, size_t(chunk * ximg));
            float* db = scratch(3, size_t(chunk * dimg));
            for (int64_t c0 = b0; c0 < b1; c0 += chunk) {
                const int64_t n = std::min(chunk, b1 - c0);
                for (int64_t b = 0; b < n; b++) {
                    k.to_blocked(x + (c0 + b) * p.Cin * p.H * p.W, p.Cin, p.H, p.W, xb + b * ximg, g.Hp, g.Wp, g.pt, g.pl, nullptr);
                    k.to_blocked(dy + (c0 + b) * p.Cout * Ho * Wo, p.Cout, Ho, Wo, db + b * dimg, Ho, Wo, 0, 0,
                                 acc + KK * p.Cin * Op);
                }
                DwTile a{nullptr, ximg, g.Wp * 16, nullptr, dimg, Ho * Wo * 16, n, Ho, Wo, nullptr, Op};
                for (int64_t t = 0; t < KK; t++)
                    for (int64_t c = 0; c < p.Cin; c += rc) {
                        const int64_t cn = std::min<int64_t>(rc, std::min(p.Cin - c, 16 - c % 16));
                        a.x = xb + (c / 16) * g.Hp * g.Wp * 16 + ((t / p.KW) * g.Wp + t % p.KW) * 16 + c % 16;
                        for (int64_t gi = 0, ob = 0; gi < ng; gi++) {
                            const int64_t nv = (nob - ob) / (ng - gi);
                            a.dy = db + ob * Ho * Wo * 16;
                            a.acc = acc + (t * p.Cin + c) * Op + ob * 16;
                            k.dw_tile(a, int(cn), int(nv), int(p.stride));
                            ob += nv;
                        }
                        c += cn - rc;  // chunks never straddle a block of 16
                    }
            }
        },
        [&](int64_t r, const float* s) {  // r = (t, c), s[o]; the last row is the bias gradient
            const int64_t c = r % p.Cin, t = r / p.Cin;
            if (t == KK) {
                if (dbias)
                    for (int64_t o = 0; o < p.Cout; o++) dbias[o] += s[o];
                return;
            }
            for (int64_t o = 0; o < p.Cout; o++) dw[(o * p.Cin + c) * KK + t] += s[o];
        });
}

// conv_in (Cin = 1) and conv_out (Cout = 1), 3x3 stride 1: each channel of the many side times
// the 9 shifted copies of the single side (x for conv_in, dy for conv_out), summed in registers.
void single_channel_backward_weight(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                    float* dbias) {
    const bool cin1 = p.Cin == 1;
    const int64_t M = cin1 ? p.Cout : p.Cin, HW = p.H * p.W, Wp = padded_row(p.W), plane = padded_plane(p.H, p.W);
    int64_t off[9];  // conv_in: x[h + p - 1][w + q - 1]; conv_out: dy[h + 1 - p][w + 1 - q]
    for (int t = 0; t < 9; t++) off[t] = cin1 ? (t / 3) * Wp + t % 3 : (2 - t / 3) * Wp + 2 - t % 3;
    const int64_t chunk = std::max<int64_t>(1, (64 << 10) / plane);  // padded planes of a chunk stay in L2
    // conv_in's many side is dy: its channel sums (the bias gradient) come with the same pass
    const bool fuse_bias = cin1 && dbias;
    if (dbias && !fuse_bias) bias_grad(k, p, dy, dbias);
    reduce_over_images(
        p.B, M * 10, M * 10,
        [&](float* acc, int64_t b0, int64_t b1) {  // acc (M, 9), then the bias sums (M)
            float* sb = scratch(2, size_t(chunk * plane));
            for (int64_t c0 = b0; c0 < b1; c0 += chunk) {
                const int64_t n = std::min(chunk, b1 - c0);
                for (int64_t b = 0; b < n; b++) pad_plane((cin1 ? x : dy) + (c0 + b) * HW, p.H, p.W, sb + b * plane);
                const float* many = cin1 ? dy + c0 * p.Cout * HW : x + c0 * p.Cin * HW;
                k.dw_single({many, M * HW, sb, plane, Wp, off, M, n, p.H, p.W, acc, fuse_bias ? acc + M * 9 : nullptr});
            }
        },
        [&](int64_t, const float* s) {  // (Cout, 1, 3, 3) or (1, Cin, 3, 3): (M, 9) either way
            for (int64_t i = 0; i < M * 9; i++) dw[i] += s[i];
            if (fuse_bias)
                for (int64_t i = 0; i < M; i++) dbias[i] += s[M * 9 + i];
        });
}

// 1x1: dW (Cout, Cin) += sum_b dy[b] (Cout, HW) x[b]^T (HW, Cin), in chunks of images that fit L2;
// the bias gradient (sums of the dy rows) in the same pass.
void pointwise_backward_weight(const ConvIsa& k, const Conv2dParams& p, const float* x, const float* dy, float* dw,
                               float* dbias) {
    const int64_t HW = p.H * p.W, chunk = std::max<int64_t>(1, (128 << 10) / ((p.Cin + p.Cout) * HW));
    reduce_over_images(
        p.B, p.Cout * (p.Cin + 1), p.Cin + 1,
        [&](float* acc, int64_t b0, int64_t b1) {  // acc (Cout, Cin), then the bias gradient (Cout)
            for (int64_t c0 = b0; c0 < b1; c0 += chunk)
                k.pointwise_dw({dy + c0 * p.Cout * HW, x + c0 * p.Cin * HW, p.Cout * HW, p.Cin * HW, p.Cout, p.Cin, HW,
                                std::min(chunk, b1 - c0), acc, dbias ? acc + p.Cout * p.Cin : nullptr});
        },
        [&](int64_t r, const float* s) {  // rows of Cin + 1 floats: (Cout, Cin) then Cout bias sums
            for (int64_t i = 0; i < p.Cin + 1; i++) {
                const int64_t f = r * (p.Cin + 1) + i;  // flat index into acc
                if (f < p.Cout * p.Cin) dw[f] += s[i];
                else if (dbias) dbias[f - p.Cout * p.Cin] += s[i];
            }
        });
}

void fast_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias) {
    if (bf16_conv(p)) return amx_conv_backward_weight(p, x, dy, dw, dbias);
    const ConvIsa& k = conv_isa();
    if (winograd_conv(p)) return winograd_backward(k, p, x, dy, nullptr, nullptr, false, dw, dbias);
    if (is_3x3_same(p) && (p.Cin == 1 || p.Cout == 1)) return single_channel_backward_weight(k, p, x, dy, dw, dbias);
    if (direct_ok(p) && !is_1x1(p)) return direct_backward_weight(k, p, x, dy, dw, dbias);  // bias from the dy pass
    if (is_1x1(p)) return pointwise_backward_weight(k, p, x, dy, dw, dbias);
    if (dbias) bias_grad(k, p, dy, dbias);
    conv2d_backward_weight_ref<float>(p, x, dy, dw, nullptr);
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
    fast_forward(p, x, w, bias, y);
}
void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx, bool accumulate) {
    fast_backward_data(p, dy, w, dx, accumulate);
}
void conv2d_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias) {
    fast_backward_weight(p, x, dy, dw, dbias);
}
bool conv2d_backward_shared(const Conv2dParams& p) { return winograd_conv(p); }
void conv2d_backward(const Conv2dParams& p, const float* x, const float* dy, const float* w, float* dx, bool accumulate,
                     float* dw, float* dbias) {
    winograd_backward(conv_isa(), p, x, dy, w, dx, accumulate, dw, dbias);
}

}  // namespace dl::fast
