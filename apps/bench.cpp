// Kernel benchmarks: GFLOP/s of conv2d and SGEMM on the U-Net's shapes, beside the machine's FMA
// peak, which the bench measures itself. Never a timed test: `make bench` runs `bench --conv`.
//
//   bench --conv       conv2d forward and forward+backward GFLOP/s per U-Net shape (batch 64)
//   bench --gemm       SGEMM GFLOP/s on square and U-Net-like sizes
//   bench --kernels    GroupNorm, SiLU, upsampling, softmax: time and GB/s (bytes moved once)
//   bench --train      the whole training step (data loading excluded): images/s
//                      (median of --reps steps), the no-grad forward's images/s at the same batch
//                      (what sampling costs), peak RSS, and where the step's time goes op by op
//                      (autograd/profile.h), with the step's GFLOP/s as a fraction of the peak.
//                      --ch and --res-blocks choose the U-Net (default: the reference's, ch 32
//                      and two ResBlocks per level, as PyTorch's twin of it is timed); --forward-ops shows
//                      the no-grad forward's table instead of the step's (where sampling's time goes)
//   bench --ladder     one 3x3 stride-1 pad-1 convolution (--ladder-shape B,Cin,Cout,H; default
//                      --batch,32,32,28: the U-Net's 28x28 level) forward, backward-data and
//                      backward-weight by every algorithm the build has, from the reference loop
//                      (conv2d_*_ref<float>) up through the direct SIMD tiles at each SIMD level
//                      (portable, avx2, avx512, up to --simd / DL_SIMD), Winograd and bf16 on AMX:
//                      time, GFLOP/s, %peak, speedup over the reference and over the rung below,
//                      and the error against conv2d_*_ref<double> on the same inputs
//                      (tensor/fast/README.md holds its figures). Table only, no --json.
//   --json             one JSON object per line instead of the table: first {"op": "peak", ...}, then
//                      per conv shape op, B, Cin, Cout, H, W, k, stride, fwd_gflops, fwdbwd_gflops
//                      (and bwd_data_gflops, bwd_weight_gflops, peak_gflops); --train: one
//                      {"op": "train_step", images_per_s, forward_images_per_s, peak_rss_mb, ...}
//                      and one {"op": "step_op", name, ...} per row of its table ("forward_op",
//                      calls_per_forward, ms_per_forward with --forward-ops)
//   --simd LEVEL       avx512, avx2 or portable (default: the best this CPU has)
//   --batch B, --reps N, --threads T
//   --cpu-time         CPU seconds per thread instead of wall-clock (tuning on a busy machine)
//
// Built with make MPI=1, `mpirun -np N build-mpi/bench --train` times the data-parallel step:
// --batch is the global batch, each rank takes --batch / N of it, and the all-reduce of the
// gradient is a row of the table (its share of the step); rank 0 prints (ddpm/mpi/README.md).
//
// Forward+backward counts 3x the forward FLOPs (forward, backward to the input, backward to the
// weight), the usual convention for a convolution's training FLOPs; each figure is the median
// of --reps timed runs after warm-up runs. The peak is an FMA loop with enough independent
// accumulators to hide latency, one per thread, all threads at once.
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "autograd/profile.h"
#include "ddpm/trainer.h"
#include "tensor/conv.h"
#include "tensor/cpu.h"
#include "tensor/gemm.h"
#include "tensor/kernels.h"
#include "tensor/tensor.h"
#ifdef DL_MPI
#include "ddpm/mpi/mpi_run.h"
#endif

using namespace dl;

namespace {
#ifdef DL_MPI
ddpm::MpiRun* g_mpi = nullptr;  // data-parallel --train under mpirun (more than one rank)
#endif

struct Options {
    bool conv = false, gemm = false, kernels = false, train = false, json = false, ladder = false;
    int64_t ladder_shape[4] = {0, 32, 32, 28};  // --ladder: B (0: --batch), Cin, Cout, H = W
    int batch = 64, reps = 10;
    int64_t ch = 32, res_blocks = 2;  // --train's U-Net
    bool conv_shapes = false;         // --train: a row per conv2d shape
    bool forward_ops = false;         // --train: the table of the no-grad forward instead of the step's
    double dropout = 0;
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// --cpu-time: process CPU seconds per thread instead of wall-clock seconds. On a loaded machine this
// leaves out the time other processes hold the cores (for tuning with 1 thread; not the reported figures).
bool g_cpu_time = false;
double clock_now() {
    if (!g_cpu_time) return now();
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec)) / omp_get_max_threads();
}

// Median seconds of fn over reps runs, after warm-up runs (at least 3, and at least 0.2 s; with
// one_warmup just one, for loops too slow for that to matter: the reference convolution).
double median_time(const std::function<void()>& fn, int reps, bool one_warmup = false) {
    double t0 = now();
    for (int i = 0; i < (one_warmup ? 1 : 3) || (!one_warmup && now() - t0 < 0.2); i++) fn();
    std::vector<double> ts;
    for (int i = 0; i < reps; i++) {
        double s = clock_now();
        fn();
        ts.push_back(clock_now() - s);
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

void fill_random(std::vector<float>& v, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (float& x : v) {
        s = s * 1664525u + 1013904223u;
        x = float(s >> 8) / float(1 << 24) * 2.f - 1.f;
    }
}

// ---- FMA peak ----------------------------------------------------------------------------------
// 12 independent accumulator chains per thread: enough for 2 FMA pipes of latency 4 (or 6).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
    // distinct starting values, or the compiler merges the identical chains into one
    __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f), a3 = _mm512_set1_ps(0.13f),
           a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f), a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f),
           a8 = _mm512_set1_ps(0.18f), a9 = _mm512_set1_ps(0.19f), a10 = _mm512_set1_ps(0.20f), a11 = _mm512_set1_ps(0.21f);
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-4f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c), a1 = _mm512_fmadd_ps(a1, m, c), a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c), a4 = _mm512_fmadd_ps(a4, m, c), a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c), a7 = _mm512_fmadd_ps(a7, m, c), a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c), a10 = _mm512_fmadd_ps(a10, m, c), a11 = _mm512_fmadd_ps(a11, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    float out[16];
    _mm512_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
    // distinct starting values, or the compiler merges the identical chains into one
    __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f), a3 = _mm256_set1_ps(0.13f),
           a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f), a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f),
           a8 = _mm256_set1_ps(0.18f), a9 = _mm256_set1_ps(0.19f), a10 = _mm256_set1_ps(0.20f), a11 = _mm256_set1_ps(0.21f);
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

#endif

// The two bf16 engines of an AMX CPU, measured as the FMA loop is: AVX512_BF16's VDPBF16PS (32
// bf16 products summed in pairs into 16 floats, 64 FLOPs per instruction) with 12 chains, and AMX's
// TDPBF16PS (a 16x32 by 32x16 bf16 tile product into 16x16 floats, 16,384 multiply-adds) on 4 tiles.
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_loop(int64_t iters) {
    __m512 a[12];
    for (int k = 0; k < 12; k++) a[k] = _mm512_set1_ps(0.1f * float(k));
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3c003c00), y = (__m512bh)_mm512_set1_epi32(0x3c003c00);  // 2^-7 each
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int k = 0; k < 12; k++) a[k] = _mm512_dpbf16_ps(a[k], x, y);
    float out[16];
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(a[0], a[5]), a[11]));
    return out[0];
}

__attribute__((target("amx-tile,amx-bf16"))) float amx_loop(int64_t iters) {
    struct alignas(64) {
        uint8_t palette = 1, start_row = 0, reserved[14] = {};
        uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
        uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
    } cfg;
    alignas(64) static uint16_t ab[2][512];  // zeros: the products' values do not change the speed
    alignas(64) float c[256];
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ab[0], 64);
    _tile_loadd(5, ab[1], 64);
    _tile_loadd(6, ab[0], 64);
    _tile_loadd(7, ab[1], 64);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_release();
    return c[0];
}
#else
float dpbf16_loop(int64_t) { return 0; }
float amx_loop(int64_t) { return 0; }
#endif

// {VDPBF16PS, AMX} GFLOP/s on all threads at once, best of 3; only where bf16_available().
std::pair<double, double> measure_bf16_peaks() {
    const int nt = omp_get_max_threads();
    double dp = 0, amx = 0;
    for (int t = 0; t < 3; t++) {
        float sink = 0;
        double s = now();
#pragma omp parallel reduction(+ : sink)
        sink += dpbf16_loop(5'000'000);
        dp = std::max(dp, 5e6 * 12 * 64 * nt / (now() - s) / 1e9);
        s = now();
#pragma omp parallel reduction(+ : sink)
        sink += amx_loop(1'000'000);
        amx = std::max(amx, 1e6 * 4 * 16 * 16 * 32 * 2 * nt / (now() - s) / 1e9);
        if (sink == 12345.f) std::printf(" ");
    }
    return {dp, amx};
}

// GFLOP/s of the FMA loop on all threads at once (best of a few tries; the clock ramps up).
double measure_peak(SimdLevel level) {
#if !defined(__x86_64__)
    level = SimdLevel::PORTABLE;
#endif
    if (level == SimdLevel::PORTABLE) return 0;
    const int lanes = level == SimdLevel::AVX512 ? 16 : 8;
    const int64_t iters = 20'000'000;
    double best = 0;
    for (int t = 0; t < 4; t++) {
        double s = clock_now();  // --cpu-time: CPU time here too, or a busy machine's peak is low beside the kernels'
        float sink = 0;
#pragma omp parallel reduction(+ : sink)
        {
#if defined(__x86_64__)
            sink += level == SimdLevel::AVX512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#endif
        }
        double el = clock_now() - s;
        if (sink == 12345.f) std::printf(" ");  // keep the result alive
        best = std::max(best, double(iters) * 12 * lanes * 2 * omp_get_max_threads() / el / 1e9);
    }
    return best;
}

// ---- conv2d --------------------------------------------------------------------------------------

struct ConvShape {
    const char* name;
    int64_t cin, cout, h, k, stride;
};

void bench_conv(const Options& o, double peak) {
    const ConvShape shapes[] = {
        {"3x3 C32 28px", 32, 32, 28, 3, 1},  {"3x3 C64 14px", 64, 64, 14, 3, 1},
        {"3x3 C64 7px", 64, 64, 7, 3, 1},    {"3x3 C128 14px", 128, 128, 14, 3, 1},
        {"conv_in 1->32", 1, 32, 28, 3, 1},  {"conv_out 32->1", 32, 1, 28, 3, 1},
        {"1x1 64->32 14px", 64, 32, 14, 1, 1}, {"down 3x3 s2 C32", 32, 32, 28, 3, 2},
    };
    if (!o.json)
        std::printf("%-17s %9s %9s %9s %9s %8s   (GFLOP/s; %%peak of fwd+bwd)\n", "conv2d", "fwd", "bwd_data",
                    "bwd_wt", "fwd+bwd", "%peak");
    for (const ConvShape& s : shapes) {
        Conv2dParams p{o.batch, s.cin, s.h, s.h, s.cout, s.k, s.k, s.stride, s.k / 2};
        std::vector<float> x(size_t(p.B * p.Cin * p.H * p.W)), w(size_t(p.Cout * p.Cin * p.KH * p.KW)),
            bias(size_t(p.Cout)), y(size_t(p.B * p.Cout * p.Ho() * p.Wo())), dy(y.size()), dx(x.size()),
            dw(w.size()), db(bias.size());
        fill_random(x, 1), fill_random(w, 2), fill_random(bias, 3), fill_random(dy, 4);
        const double fl = p.flops();
        double tf = median_time([&] { conv2d_forward(p, x.data(), w.data(), bias.data(), y.data()); }, o.reps);
        double td = median_time([&] { conv2d_backward_data(p, dy.data(), w.data(), dx.data()); }, o.reps);
        double tw = median_time([&] { conv2d_backward_weight(p, x.data(), dy.data(), dw.data(), db.data()); }, o.reps);
        double tfb = median_time(
            [&] {
                conv2d_forward(p, x.data(), w.data(), bias.data(), y.data());  // as a training step calls them
                conv2d_backward(p, x.data(), dy.data(), w.data(), dx.data(), true, dw.data(), db.data());
            },
            o.reps);
        const double gf = fl / tf / 1e9, gfb = 3 * fl / tfb / 1e9;
        if (o.json)
            std::printf("{\"op\": \"conv2d\", \"B\": %ld, \"Cin\": %ld, \"Cout\": %ld, \"H\": %ld, \"W\": %ld, \"k\": %ld, "
                        "\"stride\": %ld, \"fwd_gflops\": %.1f, \"fwdbwd_gflops\": %.1f, \"bwd_data_gflops\": %.1f, "
                        "\"bwd_weight_gflops\": %.1f, \"peak_gflops\": %.1f}\n",
                        long(p.B), long(p.Cin), long(p.Cout), long(p.H), long(p.W), long(p.KH), long(p.stride), gf, gfb,
                        fl / td / 1e9, fl / tw / 1e9, peak);
        else
            std::printf("%-17s %9.1f %9.1f %9.1f %9.1f %7.0f%%\n", s.name, gf, fl / td / 1e9, fl / tw / 1e9, gfb,
                        peak > 0 ? 100 * gfb / peak : 0.0);
        std::fflush(stdout);
    }
}

// ---- the ladder: one convolution by every algorithm the build has -----------------------------
// Each rung runs the three passes of one 3x3 stride-1 pad-1 convolution on the same random inputs.
// The reference rung calls the loops of tensor/conv.cpp (conv2d_*_ref<float>) directly; the others
// call the public conv2d_* with set_simd_level() and set_precision() chosen for the rung (the
// plan in tensor/fast/conv.cpp then takes the direct tiles, Winograd or AMX for this shape). The
// error of a pass is max |out - out64| / max |out64|, out64 from conv2d_*_ref<double> on the same
// inputs converted to double; for backward-weight the larger of dw's and dbias's.

// max |a - ref| / max |ref| (NaN if a holds a NaN or an infinity)
double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
    double e = 0, m = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) return std::numeric_limits<double>::quiet_NaN();
        e = std::max(e, std::abs(double(a[i]) - ref[i]));
        m = std::max(m, std::abs(ref[i]));
    }
    return m > 0 ? e / m : e;
}

// Restores the SIMD level and the precision on the way out, however it is left.
struct KernelSettingsGuard {
    SimdLevel level = simd_level();
    Precision prec = precision();
    ~KernelSettingsGuard() { set_simd_level(level), set_precision(prec); }
};

void bench_ladder(const Options& o, double peak) {
    KernelSettingsGuard restore;
    const int64_t B = o.ladder_shape[0] > 0 ? o.ladder_shape[0] : o.batch;
    const Conv2dParams p{B, o.ladder_shape[1], o.ladder_shape[3], o.ladder_shape[3], o.ladder_shape[2], 3, 3, 1, 1};
    const size_t nx = size_t(p.B * p.Cin * p.H * p.W), nw = size_t(p.Cout * p.Cin * 9), nb = size_t(p.Cout),
                 ny = size_t(p.B * p.Cout * p.Ho() * p.Wo());
    std::vector<float> x(nx), w(nw), bias(nb), dy(ny), y(ny), dx(nx), dw(nw), db(nb);
    fill_random(x, 1), fill_random(w, 2), fill_random(bias, 3), fill_random(dy, 4);
    auto to_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    const std::vector<double> x64 = to_double(x), w64 = to_double(w), bias64 = to_double(bias), dy64 = to_double(dy);
    std::vector<double> y64(ny), dx64(nx), dw64(nw), db64(nb);
    conv2d_forward_ref<double>(p, x64.data(), w64.data(), bias64.data(), y64.data());
    conv2d_backward_data_ref<double>(p, dy64.data(), w64.data(), dx64.data());  // dx64, dw64, db64 start at 0
    conv2d_backward_weight_ref<double>(p, x64.data(), dy64.data(), dw64.data(), db64.data());

    struct Rung { std::string name; bool ref; SimdLevel level; Precision prec; };
    const SimdLevel top = simd_level();  // the best level, or the cap of --simd / DL_SIMD
    std::vector<Rung> rungs{{"reference", true, top, Precision::FP32}};
    if (kFastKernels) {
        for (int l = 0; l <= int(top); l++)
            rungs.push_back({cat("direct-", simd_name(SimdLevel(l))), false, SimdLevel(l), Precision::FP32});
        rungs.push_back({cat("winograd-", simd_name(top)), false, top, Precision::WINOGRAD});
        if (bf16_available()) rungs.push_back({"bf16-amx", false, top, Precision::BF16});
    }

    const int ref_reps = std::min(o.reps, 3);
    const double fl = p.flops();
    std::printf("conv2d ladder: 3x3 stride 1 pad 1, B=%ld Cin=%ld Cout=%ld %ldx%ld, %.3g GFLOP per pass "
                "(the direct convolution's 2*B*Cout*Ho*Wo*Cin*9 for every rung)\n",
                long(p.B), long(p.Cin), long(p.Cout), long(p.H), long(p.W), fl / 1e9);
    std::printf("time: median of %d runs (reference: %d), %s on %d threads; a shared machine makes it noisy\n", o.reps,
                ref_reps, g_cpu_time ? "CPU time per thread (--cpu-time)" : "wall clock", omp_get_max_threads());
    std::printf("err: max|out - out64| / max|out64|, out64 = conv2d_*_ref<double> on the same inputs "
                "(bwd_weight: the larger of dw's and dbias's)\n");
    std::printf("rungs: reference = conv2d_*_ref<float>; direct-LEVEL = Precision::FP32 at set_simd_level(LEVEL); "
                "winograd = Precision::WINOGRAD; bf16-amx = Precision::BF16\n");
    std::printf("%-16s %-10s %10s %9s %7s %8s %8s %9s\n", "rung", "pass", "ms", "GFLOP/s", "%peak", "x ref", "x below",
                "err");
    const char* passes[3] = {"forward", "bwd_data", "bwd_weight"};
    double t_ref[3] = {}, t_below[3] = {};
    for (const Rung& r : rungs) {
        set_simd_level(r.level);
        set_precision(r.prec);
        for (int pass = 0; pass < 3; pass++) {
            std::function<void()> fn;
            if (pass == 0)
                fn = r.ref ? std::function<void()>([&] { conv2d_forward_ref<float>(p, x.data(), w.data(), bias.data(), y.data()); })
                           : [&] { conv2d_forward<float>(p, x.data(), w.data(), bias.data(), y.data()); };
            else if (pass == 1)
                fn = r.ref ? std::function<void()>([&] {
                                 std::fill(dx.begin(), dx.end(), 0.f);  // the loop accumulates
                                 conv2d_backward_data_ref<float>(p, dy.data(), w.data(), dx.data());
                             })
                           : [&] { conv2d_backward_data<float>(p, dy.data(), w.data(), dx.data(), false); };
            else
                fn = [&] {  // both accumulate into dw and dbias
                    std::fill(dw.begin(), dw.end(), 0.f), std::fill(db.begin(), db.end(), 0.f);
                    if (r.ref) conv2d_backward_weight_ref<float>(p, x.data(), dy.data(), dw.data(), db.data());
                    else conv2d_backward_weight<float>(p, x.data(), dy.data(), dw.data(), db.data());
                };
            const double t = r.ref ? median_time(fn, ref_reps, true) : median_time(fn, o.reps);
            // the outputs hold the last timed run's result
            const double err = pass == 0   ? rel_err(y, y64)
                               : pass == 1 ? rel_err(dx, dx64)
                                           : std::max(rel_err(dw, dw64), rel_err(db, db64));
            if (r.ref) t_ref[pass] = t;
            const double gf = fl / t / 1e9;
            std::printf("%-16s %-10s %10.3f %9.1f ", r.name.c_str(), passes[pass], 1e3 * t, gf);
            if (peak > 0) std::printf("%6.1f%% ", 100 * gf / peak);
            else std::printf("%7s ", "-");
            std::printf("%8.2f ", t_ref[pass] / t);
            if (r.ref) std::printf("%8s ", "-");
            else std::printf("%8.2f ", t_below[pass] / t);
            std::printf("%9.2e\n", err);
            std::fflush(stdout);
            t_below[pass] = t;
        }
    }
    if (!kFastKernels)
        std::printf("direct SIMD tiles, Winograd, bf16: not in this build (make REF=1 compiles none of tensor/fast/)\n");
    else if (!bf16_available())
        std::printf("bf16-amx: not available on this CPU (needs AMX-BF16 and AVX512_BF16, and the OS's tile state)\n");
}

// ---- SGEMM ---------------------------------------------------------------------------------------

void bench_gemm(const Options& o, double peak) {
    struct G { int64_t m, n, k; bool ta, tb; const char* what; };
    const G sizes[] = {
        {256, 256, 256, false, false, "square"},        {512, 512, 512, false, false, "square"},
        {1024, 1024, 1024, false, false, "square"},     {1024, 1024, 1024, true, true, "square, both transposed"},
        {32, 784, 288, false, false, "conv 3x3 C32 28px, one image"},
        {64, 196, 576, false, false, "conv 3x3 C64 14px, one image"},
        {49, 49, 64, true, false, "attention q^T k, 7px C64"},
        {64, 49, 49, false, true, "attention v w^T, 7px C64"},
        {64, 128, 64, false, true, "linear, batch 64"},
    };
    if (!o.json) std::printf("%-6s %-6s %-6s %-3s %9s %7s  %s\n", "M", "N", "K", "op", "GFLOP/s", "%peak", "");
    for (const G& g : sizes) {
        std::vector<float> a(size_t(g.m * g.k)), b(size_t(g.k * g.n)), c(size_t(g.m * g.n));
        fill_random(a, 1), fill_random(b, 2);
        const int64_t lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
        double t = median_time([&] { gemm<float>(g.ta, g.tb, g.m, g.n, g.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), g.n); },
                               o.reps);
        const double gf = 2.0 * g.m * g.n * g.k / t / 1e9;
        const char* op = g.ta ? (g.tb ? "TT" : "TN") : (g.tb ? "NT" : "NN");
        if (o.json)
            std::printf("{\"op\": \"gemm\", \"M\": %ld, \"N\": %ld, \"K\": %ld, \"trans\": \"%s\", \"gflops\": %.1f}\n",
                        long(g.m), long(g.n), long(g.k), op, gf);
        else
            std::printf("%-6ld %-6ld %-6ld %-3s %9.1f %6.0f%%  %s\n", long(g.m), long(g.n), long(g.k), op, gf,
                        peak > 0 ? 100 * gf / peak : 0.0, g.what);
    }
}

// ---- the other kernels: memory-bound, so GB/s (bytes read + written once) ------------------------------

void bench_kernels(const Options& o) {
    const int64_t B = o.batch;
    auto report = [&](const std::string& name, double sec, double bytes) {
        if (o.json)
            std::printf("{\"op\": \"%s\", \"B\": %ld, \"us\": %.1f, \"gbps\": %.1f}\n", name.c_str(), long(B), sec * 1e6,
                        bytes / sec / 1e9);
        else
            std::printf("%-44s %9.1f us %8.1f GB/s\n", name.c_str(), sec * 1e6, bytes / sec / 1e9);
    };
    if (!o.json) std::printf("%-44s %12s %13s\n", "kernel (float32)", "time", "traffic");
    struct GN { int64_t C, HW; };
    for (GN g : {GN{32, 784}, GN{64, 196}, GN{64, 49}, GN{128, 196}}) {
        const int64_t n = B * g.C * g.HW, G = 8;
        const size_t N = size_t(n), C = size_t(g.C), BG = size_t(B * G);
        std::vector<float> x(N), y(N), dy(N), dx(N), gam(C, 1.f), bet(C), mean(BG), rstd(BG), dg(C), db(C);
        fill_random(x, 1), fill_random(dy, 2);
        const std::string shape = cat("(", B, ",", g.C, ",", g.HW, ") G=8");
        report("group_norm fwd " + shape,
               median_time([&] { group_norm_forward(x.data(), gam.data(), bet.data(), B, g.C, g.HW, G, 1e-5, y.data(), mean.data(), rstd.data()); }, o.reps),
               8.0 * n);
        report("group_norm bwd " + shape,
               median_time([&] { group_norm_backward(x.data(), gam.data(), mean.data(), rstd.data(), dy.data(), B, g.C, g.HW, G, dx.data(), dg.data(), db.data()); }, o.reps),
               16.0 * n);
    }
    {
        const int64_t n = B * 32 * 784;
        const size_t N = size_t(n);
        std::vector<float> x(N), y(N), dy(N), dx(N);
        fill_random(x, 3), fill_random(dy, 4);
        report(cat("silu fwd n=", n), median_time([&] { silu_forward(x.data(), y.data(), n); }, o.reps), 8.0 * n);
        report(cat("silu bwd n=", n), median_time([&] { silu_backward(x.data(), dy.data(), dx.data(), n); }, o.reps), 16.0 * n);
    }
    for (int64_t h : {7, 14}) {
        const int64_t P = B * 64, n = P * h * h;
        const size_t N = size_t(n);
        std::vector<float> x(N), y(4 * N), dx(N);
        fill_random(x, 5);
        const std::string shape = cat("(", B, ",64,", h, ",", h, ")");
        report("upsample2x fwd " + shape, median_time([&] { upsample_nearest2d_forward(x.data(), y.data(), P, h, h); }, o.reps), 20.0 * n);
        report("upsample2x bwd " + shape, median_time([&] { upsample_nearest2d_backward(y.data(), dx.data(), P, h, h); }, o.reps), 24.0 * n);
    }
    {
        const int64_t rows = B * 49, n = 49;  // attention over the 7x7 positions
        const size_t N = size_t(rows * n);
        std::vector<float> x(N), y(N), dy(N), dx(N);
        fill_random(x, 6), fill_random(dy, 7);
        report(cat("softmax fwd (", rows, ",", n, ")"), median_time([&] { softmax_forward(x.data(), y.data(), rows, n); }, o.reps), 8.0 * rows * n);
        report(cat("softmax bwd (", rows, ",", n, ")"), median_time([&] { softmax_backward(y.data(), dy.data(), dx.data(), rows, n); }, o.reps), 16.0 * rows * n);
    }
}


// ---- the whole training step -------------------------------------------------------------------
// make train's step (on the reference U-Net unless --ch / --res-blocks say otherwise) on random
// 28x28 images (their content does not change the time): zero_grad,
// training_loss (q_sample, the U-Net, the MSE), backward, and TrainState::update (clipping, Adam,
// the EMA). The batch, t and eps are drawn before the clock starts. Timed steps run under an
// OpProfile; its overhead is a clock read per op (a few hundred per step).
void bench_train(const Options& o, double peak) {
    ddpm::IdxImages images;
    images.n = 512, images.rows = 28, images.cols = 28;
    images.pixels.resize(size_t(images.n * 28 * 28));
    uint32_t s = 12345;
    for (uint8_t& p : images.pixels) p = uint8_t((s = s * 1664525u + 1013904223u) >> 24);
    ddpm::TrainConfig cfg;
    cfg.batch = o.batch;
    cfg.steps = 1000;  // the learning-rate schedule's length; the rate does not change the time
    cfg.model.ch = o.ch;
    cfg.model.num_res_blocks = o.res_blocks;
    cfg.model.dropout = o.dropout;
    ddpm::TrainState st(cfg, ddpm::Dataset(std::move(images)));
    st.model.train();
    const ddpm::EpsModel model = ddpm::eps_model(st.model);

    OpTime optimizer, zero;  // the parts of the step that are not ops
    auto step = [&](OpProfile* prof) {
        Tensor x0 = st.data.next_batch(o.batch, st.data_gen);  // (B, 1, 28, 28)
        std::vector<int64_t> t = randint(o.batch, cfg.T, st.noise_gen);
        Tensor eps = randn(x0.shape(), st.noise_gen);
#ifdef DL_MPI
        if (g_mpi)  // this rank's share of the global batch (ddpm/parallel.h)
            x0 = ddpm::share_of(x0, g_mpi->rank(), g_mpi->size()), t = ddpm::share_of(t, g_mpi->rank(), g_mpi->size()),
            eps = ddpm::share_of(eps, g_mpi->rank(), g_mpi->size());
#endif
        const double t0 = now();
        st.model.zero_grad();
        const double t1 = now();
        if (prof) prof->mark();
        ddpm::training_loss(st.schedule, model, x0, t, eps, &st.dropout_gen).backward();
#ifdef DL_MPI
        if (g_mpi) {  // the global batch's gradient: MPI_Allreduce of the flat gradient, / N
            const double w0 = now();
            g_mpi->barrier();  // the wait for the slowest rank, apart (train's step has no barrier: the all-reduce waits)
            const double a0 = now();
            g_mpi->average_gradients(st.model.flat_grads());
            if (prof) prof->add("waiting for the slowest rank (MPI_Barrier)", a0 - w0), prof->add("MPI_Allreduce of the gradient, / N", now() - a0);
        }
#endif
        const double t2 = now();
        st.update(cfg.lr.at(st.step + 1, cfg.steps));
        const double t3 = now();
        if (prof) prof->add("zero_grad", t1 - t0), prof->add("clip + Adam + EMA (TrainState::update)", t3 - t2);
        return t3 - t0;
    };
    for (int i = 0; i < 3; i++) step(nullptr);  // warm-up: the allocator's cache fills
    std::vector<double> times;
    std::map<std::string, OpTime> table;
    {
        OpProfile prof(o.conv_shapes);
        for (int i = 0; i < o.reps; i++) times.push_back(step(&prof));
        table = prof.table();
    }
    double total = 0;
    for (double t : times) total += t;
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];

    // The no-grad forward at the same batch, on x_t at random t (what each sampling step costs).
    // --forward-ops: its own table, from --reps more forwards under an OpProfile.
    double fwd;
    std::map<std::string, OpTime> fwd_table;
    double fwd_total = 0;
    {
        NoGradGuard ng;
        st.model.eval();
        Variable xt(randn({o.batch, 1, 28, 28}, st.noise_gen));
        std::vector<int64_t> t = randint(o.batch, cfg.T, st.noise_gen);
        fwd = median_time([&] { model(xt, t, nullptr); }, o.reps);
        if (o.forward_ops) {
            OpProfile prof(o.conv_shapes);
            for (int i = 0; i < o.reps; i++) {
                const double t0 = now();
                prof.mark();
                model(xt, t, nullptr);
                fwd_total += now() - t0;
            }
            fwd_table = prof.table();
        }
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mb = double(ru.ru_maxrss) / 1024.0;  // Linux: kilobytes

    // the rows of a table, "other" being what the ops do not account for, longest first
    struct Row { std::string name; OpTime t; };
    auto rows_of = [&](const std::map<std::string, OpTime>& tab, double all) {
        std::vector<Row> rows;
        double accounted = 0;
        for (const auto& [name, t] : tab) rows.push_back({name, t}), accounted += t.seconds;
        rows.push_back({"other (graph walk, frees, glue)", OpTime{o.reps, std::max(0.0, all - accounted), 0, 0}});
        std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.t.seconds > y.t.seconds; });
        return rows;
    };
    double flops = 0;
    for (const auto& [name, t] : table) flops += t.flops;
#ifdef DL_MPI
    if (g_mpi) flops *= g_mpi->size(), peak *= g_mpi->size();  // every rank did its share: the step's FLOPs and peak are N times rank 0's
#endif
    const double n = double(o.reps), step_gflops = flops / total / 1e9;
    // the table shown: the step's, or with --forward-ops the no-grad forward's
    const std::vector<Row> rows = o.forward_ops ? rows_of(fwd_table, fwd_total) : rows_of(table, total);
    const double shown_total = o.forward_ops ? fwd_total : total;
    const char* per = o.forward_ops ? "forward" : "step";
    const std::string net = st.config.model.str();
    if (o.json) {
        std::printf("{\"op\": \"train_step\", \"model\": \"%s\", \"B\": %d, \"images_per_s\": %.2f, \"step_ms_median\": %.2f, "
                    "\"forward_images_per_s\": %.2f, \"peak_rss_mb\": %.1f, \"gflop_per_image\": %.4f, \"step_gflops\": %.1f, "
                    "\"peak_gflops\": %.1f, \"peak_fraction\": %.4f}\n",
                    net.c_str(), o.batch, o.batch / median, 1e3 * median, o.batch / fwd, rss_mb, flops / n / o.batch / 1e9,
                    step_gflops, peak, peak > 0 ? step_gflops / peak : 0.0);
        for (const Row& r : rows)
            std::printf("{\"op\": \"%s_op\", \"name\": \"%s\", \"calls_per_%s\": %.1f, \"ms_per_%s\": %.3f, \"fraction\": %.4f, "
                        "\"gflops\": %.2f, \"gbytes_per_s\": %.2f}\n",
                        per, r.name.c_str(), per, double(r.t.calls) / n, per, 1e3 * r.t.seconds / n, r.t.seconds / shown_total,
                        r.t.seconds > 0 ? r.t.flops / r.t.seconds / 1e9 : 0.0, r.t.seconds > 0 ? r.t.bytes / r.t.seconds / 1e9 : 0.0);
        return;
    }
    std::printf("training step, batch %d, U-Net %lld parameters (%s)\n", o.batch, (long long)st.model.num_parameters(), net.c_str());
#ifdef DL_MPI
    if (g_mpi)
        std::printf("  data-parallel: %d ranks of %d threads, %d images each; gradient %.2f MB\n", g_mpi->size(), omp_get_max_threads(),
                    o.batch / g_mpi->size(), 4e-6 * double(st.model.num_parameters()));
#endif
    std::printf("  %.1f images/s (median of %d steps: %.1f ms), %.3f GFLOP per image, %.1f GFLOP/s = %.0f%% of the FMA peak\n",
                o.batch / median, o.reps, 1e3 * median, flops / n / o.batch / 1e9, step_gflops, peak > 0 ? 100 * step_gflops / peak : 0.0);
    std::printf("  no-grad forward: %.1f images/s; peak RSS %.0f MB\n\n", o.batch / fwd, rss_mb);
    std::printf("%-44s %6s %10s %7s %10s %9s\n", cat("op (of the mean ", o.forward_ops ? "no-grad forward" : "step", ")").c_str(), "calls",
                cat("ms/", per).c_str(), per, "GFLOP/s", "GB/s");
    for (const Row& r : rows) {
        const double sec = r.t.seconds;
        std::printf("%-44s %6.0f %10.2f %6.1f%% ", r.name.c_str(), double(r.t.calls) / n, 1e3 * sec / n, 100 * sec / shown_total);
        if (r.t.flops > 0) std::printf("%10.1f %9s\n", r.t.flops / sec / 1e9, "");
        else if (r.t.bytes > 0) std::printf("%10s %9.1f\n", "", r.t.bytes / sec / 1e9);
        else std::printf("\n");
    }
    std::printf("%-44s %6s %10.2f %6.1f%%\n", cat(per, " (mean)").c_str(), "", 1e3 * shown_total / n, 100.0);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        cli::Args args(argc, argv, "bench", "kernel GFLOP/s on the U-Net's shapes beside the machine's FMA peak (never a timed test)");
        Options o;
        o.conv = args.flag("--conv", "conv2d per U-Net shape: forward, backward-data, backward-weight, forward+backward (3x the forward FLOPs), % of peak (the default)");
        o.gemm = args.flag("--gemm", "SGEMM GFLOP/s, square and U-Net-like sizes");
        o.kernels = args.flag("--kernels", "GroupNorm, SiLU, upsampling, softmax: time and GB/s");
        o.train = args.flag("--train", "the whole training step (data loading excluded): images/s, no-grad forward images/s, peak RSS, and the time per op");
        o.ladder = args.flag("--ladder", "one 3x3 convolution (--ladder-shape) forward, backward-data, backward-weight by every algorithm the build has: reference loop, direct SIMD tiles per SIMD level, Winograd, bf16 (AMX); time, GFLOP/s, %peak, speedups, error against the float64 reference");
        std::string ladder_shape = args.str("--ladder-shape", "", "--ladder: B,Cin,Cout,H (3x3 stride 1 pad 1 on H x H; Cin, Cout >= 2) ('': --batch,32,32,28)");
        o.json = args.flag("--json", "one JSON object per line (op, B, Cin, Cout, H, W, k, stride, fwd_gflops, fwdbwd_gflops, ...)");
        std::string simd = args.str("--simd", "", "force an instruction set: avx512, avx2 or portable ('': the best this CPU has)");
        std::string prec = args.str("--precision", "fp32", cli::kPrecisionHelp);
        int64_t batch = args.integer("--batch", 64, ddpm::TrainConfig::kBatch, "batch size");
        int64_t reps = args.integer("--reps", 10, {1, 100000}, "timed runs per figure, after warm-up (their median is reported)");
        int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
        o.ch = args.integer("--ch", 32, {8, 256}, "--train: U-Net base channels");
        o.res_blocks = args.integer("--res-blocks", 2, nn::UNetConfig::kResBlocks, "--train: ResBlocks per resolution");
        o.conv_shapes = args.flag("--conv-shapes", "--train: a row for each conv2d shape (kernel, channels, resolution) instead of one for all");
        o.forward_ops = args.flag("--forward-ops", "--train: the per-op table of the no-grad forward (what a sampling step costs) instead of the step's");
        o.dropout = args.real("--dropout", 0.0, nn::UNetConfig::kDropout, "--train: dropout in the ResBlocks (make train's 0; the reference's 0.1)");
        g_cpu_time = args.flag("--cpu-time", "CPU seconds per thread instead of wall clock (tuning on a busy machine)");
        args.done();
        if (o.ch % 8 != 0) fail("bench: --ch must be a multiple of 8, got ", o.ch);
        o.batch = int(batch), o.reps = int(reps);
        if (!ladder_shape.empty()) {
            long long v[4];
            char tail;
            if (std::sscanf(ladder_shape.c_str(), "%lld,%lld,%lld,%lld%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4 ||
                v[0] < 1 || v[0] > 4096 || v[1] < 2 || v[1] > 1024 || v[2] < 2 || v[2] > 1024 || v[3] < 1 || v[3] > 512)
                fail("bench: --ladder-shape expects B,Cin,Cout,H with B in [1, 4096], Cin and Cout in [2, 1024], H in [1, 512], got '",
                     ladder_shape, "'");
            for (int i = 0; i < 4; i++) o.ladder_shape[i] = v[i];
        }
        if (o.ladder && o.json) fail("bench: --ladder prints a table only; drop --json");
        if (simd == "avx512") set_simd_level(SimdLevel::AVX512);
        else if (simd == "avx2") set_simd_level(SimdLevel::AVX2);
        else if (simd == "portable") set_simd_level(SimdLevel::PORTABLE);
        else if (!simd.empty()) fail("bench: --simd expects avx512, avx2 or portable, got '", simd, "'");
        cli::set_precision("bench", prec);
        if (!o.conv && !o.gemm && !o.kernels && !o.train && !o.ladder) o.conv = true;
        cli::set_threads("bench", threads);
        set_flush_denormals();
#ifdef DL_MPI
        ddpm::MpiRun mpi(argc, argv);
        if (mpi.size() > 1) {
            if (!o.train || o.conv || o.gemm || o.kernels || o.ladder) fail("bench: under mpirun (", mpi.size(), " ranks) only --train runs");
            mpi.check_batch(o.batch);
            g_mpi = &mpi;
            if (mpi.rank() != 0 && !std::freopen("/dev/null", "w", stdout)) fail("bench: rank ", mpi.rank(), " could not silence its stdout");
        }
#endif
        const double peak = measure_peak(simd_detected());
        if (!o.json)
            std::printf("threads %d, simd %s, precision %s, FMA peak %.1f GFLOP/s (%.1f per thread), batch %d\n",
                        omp_get_max_threads(), simd_name(simd_level()), precision_name(precision()), peak,
                        peak / omp_get_max_threads(), o.batch);
        else
            std::printf("{\"op\": \"peak\", \"threads\": %d, \"simd\": \"%s\", \"precision\": \"%s\", \"fma_gflops\": %.1f}\n",
                        omp_get_max_threads(), simd_name(simd_level()), precision_name(precision()), peak);
        if (bf16_available()) {  // what bf16 can reach here, beside the FMA peak
            const auto [dp, amx] = measure_bf16_peaks();
            if (!o.json)
                std::printf("bf16 peaks: VDPBF16PS %.1f GFLOP/s, AMX TDPBF16PS %.1f GFLOP/s (--precision bf16 uses AMX)\n", dp, amx);
            else
                std::printf("{\"op\": \"bf16_peak\", \"vdpbf16ps_gflops\": %.1f, \"amx_gflops\": %.1f}\n", dp, amx);
        }
        if (o.conv) bench_conv(o, peak);
        if (o.ladder) bench_ladder(o, peak);
        if (o.gemm) bench_gemm(o, peak);
        if (o.kernels) bench_kernels(o);
        if (o.train) bench_train(o, peak);
        return 0;
    } catch (const std::exception& e) {
#ifdef DL_MPI
        return ddpm::mpi_exit(e, "bench");
#endif
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
