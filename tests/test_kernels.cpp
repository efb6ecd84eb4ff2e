// The fast float32 kernels (gemm, conv2d, GroupNorm, SiLU, upsampling, softmax) against their
// reference loops run in float64 on the same inputs, on awkward shapes, for every SIMD level this
// CPU has (portable, AVX2, AVX-512, forced with set_simd_level) and with 1 and 2 threads.
//
// Tolerance: max |fast - ref| <= tol * max(1, max |ref|). The float32 kernels sum up to a few
// hundred products of values in [-1, 1], so their rounding error is about 1e-6 of the largest
// value; an indexing or accumulation bug gives errors of order 1. Each tolerance is stated where
// it is used. Backward kernels accumulate, so their outputs start from random values.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tensor/conv.h"
#include "tensor/cpu.h"
#include "tensor/gemm.h"
#include "tensor/kernels.h"
#include "tensor/tensor.h"

using namespace dl;

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (float& x : v) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = lo + (hi - lo) * float(s >> 40) / float(1 << 24);
    }
    return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// max |a - b| / max(1, max |b|)
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 1, e = 0;
    for (size_t i = 0; i < a.size(); i++) {
        m = std::max(m, std::abs(b[i]));
        e = std::max(e, std::abs(double(a[i]) - b[i]));
        if (std::isnan(a[i])) e = std::numeric_limits<double>::infinity();
    }
    return e / m;
}

// Every SIMD level this CPU supports; the level in force is restored afterwards.
std::vector<SimdLevel> levels() {
    std::vector<SimdLevel> l{SimdLevel::PORTABLE};
    if (simd_detected() >= SimdLevel::AVX2) l.push_back(SimdLevel::AVX2);
    if (simd_detected() >= SimdLevel::AVX512) l.push_back(SimdLevel::AVX512);
    return l;
}

// Runs body for every (SIMD level, thread count in {1, 2}), restoring both afterwards.
template <class F>
void for_levels_and_threads(const F& body) {
    const SimdLevel saved = simd_level();
    const int saved_threads = omp_get_max_threads();
    for (SimdLevel l : levels())
        for (int nt : {1, 2}) {
            set_simd_level(l);
            omp_set_num_threads(nt);
            INFO("simd=", std::string(simd_name(l)), " threads=", nt);
            body();
        }
    set_simd_level(saved);
    omp_set_num_threads(saved_threads);
}

}  // namespace

TEST_CASE("cpu: SIMD level detection, forcing, flush-to-zero") {
    const SimdLevel saved = simd_level();
    CHECK(simd_level() <= simd_detected());
    set_simd_level(SimdLevel::PORTABLE);
    CHECK(simd_level() == SimdLevel::PORTABLE);
    if (simd_detected() < SimdLevel::AVX512) CHECK_THROWS(set_simd_level(SimdLevel::AVX512));
    set_simd_level(saved);
    if (!kFastKernels) {
        MESSAGE("skipped flush-to-zero: make REF=1 leaves MXCSR alone (tensor/fast/cpuid.cpp sets it)");
        return;
    }
#if defined(__x86_64__)
    set_flush_denormals();
    CHECK(flush_denormals_on());
    int on = 0;
#pragma omp parallel num_threads(2) reduction(+ : on)
    on += flush_denormals_on();
    CHECK(on == 2);
    volatile float tiny = 1e-30f;
    CHECK(tiny * 1e-10f == 0.f);  // would be a denormal without FTZ
#endif
}

TEST_CASE("gemm: every transpose, odd sizes, padded leading dims, beta 0 and 1, against float64") {
    struct Case { int64_t M, N, K; };
    // odd sizes; a single row or column; K past KC (256), M past MC (144), N past NC (512)
    const Case cases[] = {{1, 1, 1},    {7, 5, 3},      {37, 45, 29}, {13, 70, 1},
                          {1, 33, 17},  {33, 1, 40},    {20, 40, 300}, {150, 40, 20}, {10, 530, 20}};
    for (const Case& c : cases)
        for (int tr = 0; tr < 4; tr++)
            for (float beta : {0.f, 1.f}) {
                const bool ta = tr & 1, tb = tr & 2;
                INFO("M=", c.M, " N=", c.N, " K=", c.K, " ta=", ta, " tb=", tb, " beta=", beta);
                const int64_t ar = ta ? c.K : c.M, ac = ta ? c.M : c.K, br = tb ? c.N : c.K, bc = tb ? c.K : c.N;
                const int64_t lda = ac + 3, ldb = bc + 5, ldc = c.N + 2;  // leading dims past the columns
                const auto A = random_vec(size_t(ar * lda), 1), B = random_vec(size_t(br * ldb), 2);
                const auto C0 = random_vec(size_t(c.M * ldc), 3);
                std::vector<double> R = to_double(C0), want;
                gemm_ref<double>(ta, tb, c.M, c.N, c.K, 0.75, to_double(A).data(), lda, to_double(B).data(), ldb, beta,
                                 R.data(), ldc);
                for (int64_t i = 0; i < c.M; i++)
                    for (int64_t j = 0; j < c.N; j++) want.push_back(R[size_t(i * ldc + j)]);
                for_levels_and_threads([&] {
                    std::vector<float> C = C0;  // beta 0 must not read C: fill it with NaN
                    if (beta == 0.f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
                    gemm<float>(ta, tb, c.M, c.N, c.K, 0.75f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
                    std::vector<float> got;
                    bool pad_untouched = true;  // columns past N
                    for (int64_t i = 0; i < c.M; i++)
                        for (int64_t j = 0; j < ldc; j++) {
                            const float v = C[size_t(i * ldc + j)];
                            if (j < c.N) got.push_back(v);
                            else pad_untouched &= beta == 0.f ? std::isnan(v) : v == C0[size_t(i * ldc + j)];
                        }
                    CHECK(pad_untouched);
                    CHECK(rel_err(got, want) < 1e-5);  // K <= 300 products of values in [-1, 1]
                });
            }
}

TEST_CASE("gemm inside a parallel region runs on the calling thread") {
    const int64_t n = 64;
    auto A = random_vec(size_t(n * n), 4), B = random_vec(size_t(n * n), 5);
    std::vector<float> C1(size_t(n * n)), C2(size_t(n * n));
    gemm<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C1.data(), n);
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        gemm<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C2.data(), n);
    }
    CHECK(C1 == C2);
}

namespace {

// Random inputs of one convolution and its float64 results: y, and dx, dw, db accumulated into
// random starting values dx0, dw0, db0, and dx alone (what backward-data with accumulate = false writes).
// Without bias, the forward has none and the weight gradient computes no bias gradient.
struct ConvCase {
    Conv2dParams p;
    bool with_bias;
    size_t nx, nw, ny;
    std::vector<float> x, w, b, dy, dx0, dw0, db0;
    std::vector<double> yr, dxr, dwr, dbr, dx_alone;
    ConvCase(const Conv2dParams& p_, uint32_t seed, bool with_bias_ = true)
        : p(p_), with_bias(with_bias_), nx(size_t(p.B * p.Cin * p.H * p.W)), nw(size_t(p.Cout * p.Cin * p.KH * p.KW)),
          ny(size_t(p.B * p.Cout * p.Ho() * p.Wo())), x(random_vec(nx, seed)), w(random_vec(nw, seed + 1)),
          b(random_vec(size_t(p.Cout), seed + 2)), dy(random_vec(ny, seed + 3)), dx0(random_vec(nx, seed + 4)),
          dw0(random_vec(nw, seed + 5)), db0(random_vec(size_t(p.Cout), seed + 6)), yr(ny), dxr(to_double(dx0)),
          dwr(to_double(dw0)), dbr(to_double(db0)), dx_alone(nx, 0.0) {
        const std::vector<double> bd = to_double(b);
        conv2d_forward_ref<double>(p, to_double(x).data(), to_double(w).data(), with_bias ? bd.data() : nullptr, yr.data());
        conv2d_backward_data_ref<double>(p, to_double(dy).data(), to_double(w).data(), dxr.data());
        conv2d_backward_data_ref<double>(p, to_double(dy).data(), to_double(w).data(), dx_alone.data());
        conv2d_backward_weight_ref<double>(p, to_double(x).data(), to_double(dy).data(), dwr.data(),
                                           with_bias ? dbr.data() : nullptr);
    }
    // The three passes in float32 at precision `prec` (FP32 again afterwards), and backward-data
    // once more with accumulate = false; then both backward passes in one call (conv2d_backward),
    // adding and overwriting, which must give the same numbers as the separate calls.
    struct Out {
        std::vector<float> y, dx, dw, db, dx_alone;
        std::vector<float> both_dx, both_dw, both_db, both_dx_alone, both_dw_again, both_db_again;
        bool both_same() const {
            return both_dx == dx && both_dw == dw && both_db == db && both_dx_alone == dx_alone && both_dw_again == dw &&
                   both_db_again == db;
        }
    };
    Out run(Precision prec) const {
        const float nan = std::numeric_limits<float>::quiet_NaN();  // what the overwriting calls must replace
        Out o{std::vector<float>(ny, nan), dx0, dw0, db0, std::vector<float>(nx, nan),
              dx0, dw0, db0, std::vector<float>(nx, nan), dw0, db0};
        set_precision(prec);
        conv2d_forward(p, x.data(), w.data(), with_bias ? b.data() : nullptr, o.y.data());
        conv2d_backward_data(p, dy.data(), w.data(), o.dx.data());
        conv2d_backward_data(p, dy.data(), w.data(), o.dx_alone.data(), false);
        conv2d_backward_weight(p, x.data(), dy.data(), o.dw.data(), with_bias ? o.db.data() : nullptr);
        conv2d_backward(p, x.data(), dy.data(), w.data(), o.both_dx.data(), true, o.both_dw.data(),
                        with_bias ? o.both_db.data() : nullptr);
        conv2d_backward(p, x.data(), dy.data(), w.data(), o.both_dx_alone.data(), false, o.both_dw_again.data(),
                        with_bias ? o.both_db_again.data() : nullptr);
        set_precision(Precision::FP32);
        return o;
    }
};

// Forward, backward-data (adding and overwriting) and backward-weight (+ bias) of one shape, fast
// float32 against float64, at every SIMD level and thread count (the reference is computed once).
void check_conv(const Conv2dParams& p, bool with_bias = true, bool every_level = true) {
    INFO("B=", p.B, " Cin=", p.Cin, " H=", p.H, " W=", p.W, " Cout=", p.Cout, " k=", p.KH, "x", p.KW, " stride=", p.stride,
         " pad=", p.pad);
    const ConvCase c(p, 11, with_bias);
    // tolerance: sums of Cin*k*k (forward, data) or B*Ho*Wo (weight) products; float32 error ~1e-7 per term
    const double tol = 2e-5;
    auto check = [&] {
        const ConvCase::Out o = c.run(Precision::FP32);
        CHECK(rel_err(o.y, c.yr) < tol);
        CHECK(rel_err(o.dx, c.dxr) < tol);
        CHECK(rel_err(o.dx_alone, c.dx_alone) < tol);
        CHECK(rel_err(o.dw, c.dwr) < tol);
        CHECK(rel_err(o.db, c.dbr) < tol);
        CHECK(o.both_same());
    };
    if (every_level) for_levels_and_threads(check);
    else check();
}

}  // namespace

TEST_CASE("conv2d: 3x3 and 1x1, stride 1 and 2, awkward channel counts and sizes, against float64") {
    // B, Cin, H, W, Cout, KH, KW, stride, pad
    const Conv2dParams cases[] = {
        {2, 3, 7, 5, 17, 3, 3, 1, 1},     // channels not a multiple of 16, odd sizes
        {1, 17, 9, 11, 33, 3, 3, 2, 1},   // batch 1, stride 2 with odd input
        {3, 33, 6, 6, 5, 3, 3, 1, 1},     // 3 images on 2 threads
        {2, 16, 7, 30, 64, 3, 3, 1, 1},   // rows split into tiles, 4 output blocks per tile
        {2, 8, 4, 2, 64, 3, 3, 1, 1},     // rows of 2: AVX2's one-pixel tiles of 4 output blocks
        {2, 32, 8, 8, 48, 3, 3, 2, 1},    // stride 2, even input, output blocks 48
        {1, 20, 5, 6, 9, 1, 1, 1, 0},     // 1x1
        {2, 64, 3, 4, 32, 1, 1, 1, 0},    // 1x1, U-Net-like channels
        {1, 300, 5, 11, 40, 1, 1, 1, 0},  // 1x1, 300 channels: the 55 pixels in chunks of 32 and 23
        {2, 1, 8, 9, 4, 3, 3, 1, 1},      // one input channel (conv_in)
        {2, 40, 8, 7, 1, 3, 3, 1, 1},     // one output channel (conv_out)
        {1, 1, 5, 5, 1, 3, 3, 1, 1},      // one channel both sides
        {2, 1, 9, 9, 3, 3, 3, 2, 1},      // one input channel, stride 2 (general path)
        {2, 6, 9, 8, 7, 5, 5, 1, 2},      // 5x5
        {2, 4, 8, 9, 6, 2, 2, 2, 0},      // 2x2 stride 2, no padding
        {1, 5, 7, 7, 6, 1, 1, 2, 0},      // 1x1 stride 2
        {2, 3, 10, 9, 4, 3, 3, 3, 1},     // stride 3: reference fallback
    };
    for (const Conv2dParams& p : cases) check_conv(p);
    check_conv({2, 5, 6, 7, 3, 3, 3, 1, 1}, false);  // no bias
}

TEST_CASE("conv2d: U-Net layer shapes, batch 1") {
    // at the best SIMD level only (the small cases above cover every level), to stay quick under sanitizers
    const Conv2dParams cases[] = {
        {1, 32, 28, 28, 32, 3, 3, 1, 1}, {1, 64, 7, 7, 64, 3, 3, 1, 1}, {1, 32, 28, 28, 32, 3, 3, 2, 1},
        {1, 1, 28, 28, 32, 3, 3, 1, 1},  {1, 32, 28, 28, 1, 3, 3, 1, 1}, {1, 96, 14, 14, 64, 1, 1, 1, 0},
    };
    const SimdLevel saved = simd_level();
    set_simd_level(simd_detected());
    for (const Conv2dParams& p : cases) check_conv(p, true, false);
    set_simd_level(saved);
}

namespace {

// max over i of |a[i] - ref[i]| / bound[i] (bound > 0)
double bound_ratio(const std::vector<float>& a, const std::vector<double>& ref, const std::vector<double>& bound) {
    REQUIRE(a.size() == ref.size());
    double r = 0;
    for (size_t i = 0; i < a.size(); i++)
        r = std::max(r, std::isnan(a[i]) ? std::numeric_limits<double>::infinity() : std::abs(double(a[i]) - ref[i]) / bound[i]);
    return r;
}

std::vector<double> abs_double(const std::vector<float>& v) {
    std::vector<double> a(v.size());
    for (size_t i = 0; i < v.size(); i++) a[i] = std::abs(double(v[i]));
    return a;
}

// Precision::BF16 against float64. Rounding each operand to bf16 (8 significant bits, round to
// nearest even) moves it by at most 2^-9 of itself, so each product moves by at most
// (2 * 2^-9 + 2^-18) of |w x|, and a sum of n products, summed in float32, by at most
// (2^-8 + 2^-17 + n * 2^-24) * sum |w| |x|: the reference run on |x|, |w| (and |dy|) gives that
// sum for every output. The bound is exact arithmetic, not a fitted tolerance; a wrong index or a
// dropped tap exceeds it by orders of magnitude. The convolutions bf16 takes must also differ from
// float32 somewhere (else the switch did nothing); the others (stride 2) must stay float32.
void check_conv_bf16(const Conv2dParams& p) {
    INFO("B=", p.B, " Cin=", p.Cin, " H=", p.H, " W=", p.W, " Cout=", p.Cout, " k=", p.KH, "x", p.KW, " stride=", p.stride,
         " pad=", p.pad);
    const ConvCase c(p, 21);
    // the sums of |products|, and the longest sum (the weight gradient's B*Ho*Wo pixels)
    std::vector<double> ya(c.ny), dxa(c.nx, 0.0), dwa(c.nw, 0.0), dba(size_t(p.Cout), 0.0);
    const auto xa = abs_double(c.x), wa = abs_double(c.w), dya = abs_double(c.dy);
    conv2d_forward_ref<double>(p, xa.data(), wa.data(), nullptr, ya.data());
    conv2d_backward_data_ref<double>(p, dya.data(), wa.data(), dxa.data());
    conv2d_backward_weight_ref<double>(p, xa.data(), dya.data(), dwa.data(), dba.data());
    const double n = double(std::max({p.Cin * p.KH * p.KW, p.Cout * p.KH * p.KW, p.B * p.Ho() * p.Wo()}));
    const double rel = std::ldexp(1.0, -8) + std::ldexp(1.0, -17) + n * std::ldexp(1.0, -24);
    auto bound = [&](std::vector<double> s, const std::vector<float>& start) {  // start: what the output accumulated into
        for (size_t i = 0; i < s.size(); i++) s[i] = rel * s[i] + 4 * std::ldexp(1.0, -24) * (std::abs(double(start[i])) + s[i]) + 1e-30;
        return s;
    };
    const std::vector<float> zeros_y(c.ny, 0.f), zeros_x(c.nx, 0.f);
    const auto yb = bound(ya, zeros_y), dxb = bound(dxa, c.dx0), dwb = bound(dwa, c.dw0), dbb = bound(dba, c.db0);
    const auto dx_alone_b = bound(dxa, zeros_x);
    for (int nt : {1, 2}) {
        omp_set_num_threads(nt);
        INFO("threads=", nt);
        const ConvCase::Out o = c.run(Precision::BF16), o32 = c.run(Precision::FP32);
        CHECK(bound_ratio(o.y, c.yr, yb) <= 1);
        CHECK(bound_ratio(o.dx, c.dxr, dxb) <= 1);
        CHECK(bound_ratio(o.dx_alone, c.dx_alone, dx_alone_b) <= 1);
        CHECK(bound_ratio(o.dw, c.dwr, dwb) <= 1);
        CHECK(bound_ratio(o.db, c.dbr, dbb) <= 1);
        CHECK(o.both_same());
        if (p.stride == 1) CHECK((o.y != o32.y && o.dx != o32.dx && o.dw != o32.dw));
        else CHECK((o.y == o32.y && o.dx == o32.dx && o.dw == o32.dw));
    }
}

}  // namespace

TEST_CASE("conv2d in bf16 on AMX: within the bf16 rounding bound of float64, on awkward shapes") {
    if (!bf16_available()) {
        MESSAGE("skipped: this CPU or OS has no AMX-BF16 (Precision::BF16 is unavailable here)");
        CHECK_THROWS_WITH_AS(set_precision(Precision::BF16), doctest::Contains("AMX-BF16"), Error);
        return;
    }
    const int saved_threads = omp_get_max_threads();
    // B, Cin, H, W, Cout, KH, KW, stride, pad
    const Conv2dParams cases[] = {
        {2, 3, 7, 5, 17, 3, 3, 1, 1},     // 3 channels in 32 lanes, 17 outputs in 2 tiles of 16
        {3, 33, 6, 6, 5, 3, 3, 1, 1},     // 33 input channels: a second block of 32 with one channel
        {2, 16, 7, 30, 64, 3, 3, 1, 1},   // wide rows: 32-pixel blocks straddle 3 rows
        {2, 40, 8, 7, 70, 3, 3, 1, 1},    // 70 outputs: an odd number of 16-channel tiles
        {1, 20, 5, 6, 9, 1, 1, 1, 0},     // 1x1
        {2, 64, 3, 4, 32, 1, 1, 1, 0},    // 1x1, U-Net-like channels
        {1, 300, 5, 11, 40, 1, 1, 1, 0},  // 1x1, 300 channels: the 55 pixels in chunks of 32 and 23
        {2, 6, 9, 8, 7, 5, 5, 1, 2},      // 5x5
        {2, 5, 6, 7, 3, 3, 3, 1, 0},      // no padding
        {1, 32, 28, 28, 32, 3, 3, 1, 1},  // U-Net shapes
        {1, 64, 7, 7, 64, 3, 3, 1, 1},
        {1, 17, 9, 11, 33, 3, 3, 2, 1},   // stride 2: stays float32
    };
    for (const Conv2dParams& p : cases) check_conv_bf16(p);
    omp_set_num_threads(saved_threads);
    CHECK(precision() == Precision::FP32);  // each check put it back
}

namespace {

// Precision::WINOGRAD against float64, on every SIMD level and thread count. F(4x4, 3x3) carries
// values through transforms whose coefficients reach 5 (input) and 8 (output) in each of two
// dimensions, so its rounding error is several times the direct float32 sum's: measured here at
// most 5.4e-6 of max(1, max |ref|) for the forward, 7.1e-6 for dx and 3.1e-6 for dw (the direct
// kernels on the same inputs: 2e-7 to 9e-7). The tolerance is 4e-5, twice check_conv's; a wrong coefficient,
// tap or tile edge gives errors of order 1. The convolutions Winograd takes (3x3, stride 1, pad 1,
// more than one channel each side) must differ from the direct kernels' float32 results, and the
// others must equal them bit for bit.
void check_conv_winograd(const Conv2dParams& p, bool every_level = true) {
    INFO("B=", p.B, " Cin=", p.Cin, " H=", p.H, " W=", p.W, " Cout=", p.Cout, " k=", p.KH, "x", p.KW, " stride=", p.stride,
         " pad=", p.pad);
    const ConvCase c(p, 31);
    const bool winograd = p.KH == 3 && p.KW == 3 && p.stride == 1 && p.pad == 1 && p.Cin > 1 && p.Cout > 1;
    const double tol = 4e-5;
    auto check = [&] {
        const ConvCase::Out o = c.run(Precision::WINOGRAD), o32 = c.run(Precision::FP32);
        CHECK(rel_err(o.y, c.yr) < tol);
        CHECK(rel_err(o.dx, c.dxr) < tol);
        CHECK(rel_err(o.dw, c.dwr) < tol);
        CHECK(rel_err(o.db, c.dbr) < tol);
        CHECK(rel_err(o.dx_alone, c.dx_alone) < tol);
        CHECK(o.both_same());  // Winograd's own pass over both gradients: the same sums as the two calls
        if (winograd) CHECK((o.y != o32.y && o.dx != o32.dx && o.dw != o32.dw));
        else CHECK((o.y == o32.y && o.dx == o32.dx && o.dw == o32.dw && o.db == o32.db));
    };
    if (every_level) for_levels_and_threads(check);
    else check();
}

}  // namespace

TEST_CASE("conv2d with Winograd F(4x4,3x3): within its tolerance of float64, on awkward shapes") {
    if (!kFastKernels) {
        MESSAGE("skipped: make REF=1 has no Winograd (tensor/fast/conv_winograd.cpp)");
        return;
    }
    // B, Cin, H, W, Cout, KH, KW, stride, pad
    const Conv2dParams cases[] = {
        {2, 3, 7, 5, 17, 3, 3, 1, 1},    // 3 channels of 16 lanes, 17 outputs; sizes not multiples of 4
        {3, 33, 6, 6, 5, 3, 3, 1, 1},    // 33 input channels: a block of one; 3 images on 2 threads
        {2, 16, 9, 30, 64, 3, 3, 1, 1},  // wide rows, 4 output blocks (two groups)
        {1, 20, 2, 1, 40, 3, 3, 1, 1},   // a 2x1 image: one tile, nearly all padding
        {2, 40, 8, 7, 48, 3, 3, 1, 1},   // 3 output blocks in one group
        {5, 16, 4, 4, 16, 3, 3, 1, 1},   // tiles of several images in one group
        {2, 17, 9, 11, 33, 3, 3, 2, 1},  // stride 2: direct
        {2, 20, 5, 6, 9, 1, 1, 1, 0},    // 1x1: direct
        {2, 1, 8, 9, 4, 3, 3, 1, 1},     // one input channel: direct
        {2, 5, 6, 7, 3, 3, 3, 1, 0},     // no padding: direct
    };
    for (const Conv2dParams& p : cases) check_conv_winograd(p);
    // the U-Net's shapes, at the best level only (quick under sanitizers)
    const SimdLevel saved = simd_level();
    set_simd_level(simd_detected());
    for (const Conv2dParams& p : {Conv2dParams{2, 32, 28, 28, 32, 3, 3, 1, 1}, Conv2dParams{4, 64, 7, 7, 32, 3, 3, 1, 1},
                                  Conv2dParams{2, 48, 14, 14, 32, 3, 3, 1, 1}})
        check_conv_winograd(p, false);
    set_simd_level(saved);
    CHECK(precision() == Precision::FP32);
}

TEST_CASE("group_norm, alone and with SiLU: forward and backward against float64") {
    struct Case { int64_t B, C, HW, G; };
    // odd sizes, one group, one position, 16 channels of 7x7 per group, partial vectors, and one
    // large enough (200,704 elements) for the kernels to split over two threads
    const Case cases[] = {{2, 6, 35, 3}, {1, 16, 49, 1}, {3, 4, 1, 2}, {2, 32, 196, 8}, {1, 8, 17, 4}, {4, 64, 784, 8}};
    for_levels_and_threads([&] {
        for (const Case& c : cases)
            for (bool with_affine_grads : {true, false})
            for (bool silu : {false, true}) {
                INFO("B=", c.B, " C=", c.C, " HW=", c.HW, " G=", c.G, " affine grads=", with_affine_grads, " silu=", silu);
                const size_t n = size_t(c.B * c.C * c.HW), ng = size_t(c.B * c.G);
                auto x = random_vec(n, 21, 2.f, 4.f);  // a mean far from zero
                auto gamma = random_vec(size_t(c.C), 22, 0.5f, 1.5f), beta = random_vec(size_t(c.C), 23);
                auto dy = random_vec(n, 24);
                std::vector<float> y(n), mean(ng), rstd(ng);
                std::vector<double> yr(n), meanr(ng), rstdr(ng);
                const auto xd = to_double(x), gd = to_double(gamma), bd = to_double(beta), dyd = to_double(dy);
                group_norm_forward(x.data(), gamma.data(), beta.data(), c.B, c.C, c.HW, c.G, 1e-5, y.data(), mean.data(),
                                   rstd.data(), silu);
                group_norm_forward(xd.data(), gd.data(), bd.data(), c.B, c.C, c.HW, c.G, 1e-5, yr.data(), meanr.data(),
                                   rstdr.data(), silu);
                CHECK(rel_err(y, yr) < 1e-5);  // normalized values (or their SiLU) of order 1
                CHECK(rel_err(mean, meanr) < 1e-6);
                CHECK(rel_err(rstd, rstdr) < 1e-4);  // rstd up to ~3; relative 3e-5 of it

                auto dx = random_vec(n, 25), dg = random_vec(size_t(c.C), 26), db = random_vec(size_t(c.C), 27);
                auto dxr = to_double(dx), dgr = to_double(dg), dbr = to_double(db);
                // the reference backward gets the float forward's statistics, so both see the same inputs
                const auto md = to_double(mean), rd = to_double(rstd);
                group_norm_backward(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), c.B, c.C, c.HW, c.G,
                                    dx.data(), with_affine_grads ? dg.data() : nullptr, with_affine_grads ? db.data() : nullptr, true,
                                    silu ? beta.data() : nullptr, silu ? y.data() : nullptr);
                group_norm_backward(xd.data(), gd.data(), md.data(), rd.data(), dyd.data(), c.B, c.C, c.HW, c.G, dxr.data(),
                                    with_affine_grads ? dgr.data() : nullptr, with_affine_grads ? dbr.data() : nullptr, true,
                                    silu ? bd.data() : nullptr, silu ? yr.data() : nullptr);
                CHECK(rel_err(dx, dxr) < 2e-5);
                // accumulate = false overwrites dx (NaN before) with the gradient alone
                std::vector<float> dxw(n, std::numeric_limits<float>::quiet_NaN());
                std::vector<double> dxw_r(n, 0.0);
                group_norm_backward(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), c.B, c.C, c.HW, c.G,
                                    dxw.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr), false,
                                    silu ? beta.data() : nullptr, silu ? y.data() : nullptr);
                group_norm_backward(xd.data(), gd.data(), md.data(), rd.data(), dyd.data(), c.B, c.C, c.HW, c.G,
                                    dxw_r.data(), static_cast<double*>(nullptr), static_cast<double*>(nullptr), true,
                                    silu ? bd.data() : nullptr, silu ? yr.data() : nullptr);
                CHECK(rel_err(dxw, dxw_r) < 2e-5);
                if (with_affine_grads) {  // (without, both stay the untouched random values)
                    CHECK(rel_err(dg, dgr) < 2e-5);  // sums of up to B*HW = 3136 products
                    CHECK(rel_err(db, dbr) < 2e-5);
                }
            }
    });
}

TEST_CASE("group_norm with SiLU where z is exactly zero: silu'(0) = 1/2, though y / z is 0 / 0 there") {
    // float's backward reads the sigmoid off the forward's output as y / z; at x = mean and beta = 0,
    // z and y are both zero
    for_levels_and_threads([&] {
        const int64_t B = 1, C = 2, HW = 17, G = 1;  // 17: a full vector and a partial one per channel
        std::vector<float> x(size_t(C * HW)), gamma = {1.f, 2.f}, beta = {0.f, 0.f}, dy(x.size(), 1.f);
        for (int64_t i = 0; i < C * HW; i++) x[size_t(i)] = float(i % HW - 8);  // -8..8 in each channel: mean exactly 0
        std::vector<float> y(x.size()), mean(1), rstd(1), dx(x.size());
        group_norm_forward(x.data(), gamma.data(), beta.data(), B, C, HW, G, 1e-5, y.data(), mean.data(), rstd.data(), true);
        group_norm_backward(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), B, C, HW, G, dx.data(),
                            static_cast<float*>(nullptr), static_cast<float*>(nullptr), false, beta.data(), y.data());
        const auto xd = to_double(x), gd = to_double(gamma), bd = to_double(beta), dyd = to_double(dy);
        const std::vector<double> md = {double(mean[0])}, rd = {double(rstd[0])};
        std::vector<double> dxr(x.size(), 0.0);
        group_norm_backward(xd.data(), gd.data(), md.data(), rd.data(), dyd.data(), B, C, HW, G, dxr.data(),
                            static_cast<double*>(nullptr), static_cast<double*>(nullptr), true, bd.data(), static_cast<double*>(nullptr));
        int zeros = 0;
        for (int64_t i = 0; i < C * HW; i++) zeros += y[size_t(i)] == 0.f;
        CHECK(zeros >= 2);  // the case is there
        CHECK(rel_err(dx, dxr) < 2e-5);
    });
}

TEST_CASE("exp at the ends of its range, through softmax and silu, element by element against float64") {
    for_levels_and_threads([&] {
        // softmax: e^-87.3 = 1.2e-38 (2^n with n = -126) is just above the smallest normal float; a
        // sum near 1 keeps the outputs there
        const std::vector<float> x = {0.f, -87.3f, -87.f, -86.f, -80.f, -60.f, -40.f, -20.f};
        std::vector<float> y(x.size());
        std::vector<double> yr(x.size());
        softmax_forward(x.data(), y.data(), 1, int64_t(x.size()));
        softmax_forward(to_double(x).data(), yr.data(), 1, int64_t(x.size()));
        // silu(v) = v / (1 + e^-v): e^87 = 6e37 (n = 126) and a sigmoid of 1.6e-38, still normal
        const std::vector<float> v = {-87.f, -86.f, -80.f, -40.f, -1.f, 0.f, 1.f, 40.f, 87.f};
        std::vector<float> s(v.size());
        std::vector<double> sr(v.size());
        silu_forward(v.data(), s.data(), int64_t(v.size()));
        silu_forward(to_double(v).data(), sr.data(), int64_t(v.size()));
        for (size_t i = 0; i < x.size(); i++) {
            INFO("softmax x = ", x[i]);
            CHECK(std::abs(y[i] - yr[i]) <= 1e-5 * yr[i]);
        }
        for (size_t i = 0; i < v.size(); i++) {
            INFO("silu v = ", v[i]);
            CHECK(std::abs(s[i] - sr[i]) <= 1e-5 * std::abs(sr[i]));
        }
    });
}

TEST_CASE("silu, softmax and upsampling: forward and backward against float64") {
    for_levels_and_threads([&] {
        for (int64_t n : {1, 15, 16, 17, 100003}) {  // partial vectors; enough to split over threads
            INFO("silu n=", n);
            auto x = random_vec(size_t(n), 31, -30.f, 30.f), dy = random_vec(size_t(n), 32);
            if (n > 4) x[0] = -100.f, x[1] = 100.f, x[2] = 0.f;  // exp clamping at both ends
            std::vector<float> y(static_cast<size_t>(n)), dx = random_vec(size_t(n), 33);
            std::vector<double> yr(static_cast<size_t>(n)), dxr = to_double(dx);
            silu_forward(x.data(), y.data(), n);
            silu_forward(to_double(x).data(), yr.data(), n);
            if (n > 4) {  // the clamped ends on their own, so silu(100) = 100 does not set the scale below
                CHECK(std::abs(y[0] - yr[0]) < 1e-6);
                CHECK(std::abs(y[1] - yr[1]) < 1e-4);  // float's own rounding of 100
                CHECK(y[2] == 0.f);
                y[0] = y[1] = 0.f, yr[0] = yr[1] = 0.0;
            }
            CHECK(rel_err(y, yr) < 1e-6);  // relative to max(1, max |y|) <= 30
            silu_backward(x.data(), dy.data(), dx.data(), n);
            silu_backward(to_double(x).data(), to_double(dy).data(), dxr.data(), n);
            CHECK(rel_err(dx, dxr) < 1e-5);
            std::vector<float> dxw(size_t(n), std::numeric_limits<float>::quiet_NaN());  // accumulate = false overwrites
            std::vector<double> dxw_r(size_t(n), 0.0);
            silu_backward(x.data(), dy.data(), dxw.data(), n, false);
            silu_backward(to_double(x).data(), to_double(dy).data(), dxw_r.data(), n);
            CHECK(rel_err(dxw, dxw_r) < 1e-5);
        }
        for (int64_t n : {1, 7, 49, 100}) {
            INFO("softmax n=", n);
            const int64_t rows = 37;
            auto x = random_vec(size_t(rows * n), 34, -20.f, 20.f), dy = random_vec(size_t(rows * n), 35);
            std::vector<float> y(size_t(rows * n)), dx = random_vec(size_t(rows * n), 36);
            std::vector<double> yr(size_t(rows * n)), dxr = to_double(dx);
            softmax_forward(x.data(), y.data(), rows, n);
            softmax_forward(to_double(x).data(), yr.data(), rows, n);
            CHECK(rel_err(y, yr) < 1e-6);  // probabilities
            softmax_backward(y.data(), dy.data(), dx.data(), rows, n);
            softmax_backward(yr.data(), to_double(dy).data(), dxr.data(), rows, n);
            CHECK(rel_err(dx, dxr) < 1e-5);
        }
        for (int64_t w : {1, 7, 14, 17}) {
            INFO("upsample W=", w);
            const int64_t P = 5, H = 3;
            auto x = random_vec(size_t(P * H * w), 37), dy = random_vec(size_t(P * 4 * H * w), 38);
            std::vector<float> y(size_t(P * 4 * H * w)), dx = random_vec(size_t(P * H * w), 39);
            std::vector<double> yr(y.size()), dxr = to_double(dx);
            upsample_nearest2d_forward(x.data(), y.data(), P, H, w);
            upsample_nearest2d_forward(to_double(x).data(), yr.data(), P, H, w);
            CHECK(rel_err(y, yr) == 0);
            upsample_nearest2d_backward(dy.data(), dx.data(), P, H, w);
            upsample_nearest2d_backward(to_double(dy).data(), dxr.data(), P, H, w);
            CHECK(rel_err(dx, dxr) < 1e-6);
        }
    });
}
