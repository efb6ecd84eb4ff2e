// GroupNorm, SiLU, nearest 2x upsampling and softmax on raw arrays (kernels.h).
//
// Two implementations of each: the generic templates below (plain loops, double accumulators) are
// the float64 path and the reference the tests hold the float32 path to; the float32 path runs the
// V16 kernels of kernels_simd.h, built for AVX-512, AVX2 and portable C++ and picked by
// simd_level(), with OpenMP over independent tasks (a group of an image, a row, a chunk).
//
// GroupNorm backward in one read of x and dy per group: per channel, s1 = sum dy and
// s2 = sum dy * xhat give both the group's two reductions (sum gamma s1, sum gamma s2) and, summed
// over the batch, dbeta and dgamma.
//
// GroupNorm followed by SiLU (silu = true, silu_beta) is one pass each way: forward applies the
// activation as it writes; backward first maps a group's dy through silu' into a scratch buffer
// that stays in cache for the two passes above. It saves writing and re-reading the normalized
// tensor: on a 2-core Zen 3, 5.4 ms forward and 7.3 backward per make train step against 6.9 and
// 8.2 for the two ops apart, and 46 MB less peak memory (a first try on Zen 4 ran no faster than
// the two kernels; SiLU's exp bounded both). The backward has since stopped computing the exp: it
// reads the sigmoid off the forward's output (gn_silu_grad_group), backward/forward time
// 1.36-1.51 -> 1.19-1.26.
#include "tensor/kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor/cpu.h"
#include "tensor/tensor.h"

namespace dl {

// ---- float32 kernels, one build per instruction set ---------------------------------------------

namespace {
struct KernelsIsa {
    void (*gn_forward_group)(const float*, const float*, const float*, int64_t, int64_t, double, float*, float*, float*,
                             bool);
    void (*gn_silu_grad_group)(const float*, const float*, const float*, float, float, const float*, const float*, int64_t,
                               int64_t, float*);
    void (*gn_backward_group)(const float*, const float*, float, float, const float*, int64_t, int64_t, float*, float*,
                              float*, bool);
    void (*silu_forward)(const float*, float*, int64_t);
    void (*silu_backward)(const float*, const float*, float*, int64_t, bool);
    void (*softmax_forward_row)(const float*, float*, int64_t);
    void (*softmax_backward_row)(const float*, const float*, float*, int64_t);
    void (*upsample_forward_plane)(const float*, float*, int64_t, int64_t);
    void (*upsample_backward_plane)(const float*, float*, int64_t, int64_t);
};
}  // namespace

#define DL_KERNELS_TABLE                                                                               \
    const KernelsIsa kTable{gn_forward_group,    gn_silu_grad_group,  gn_backward_group,                 \
                            silu_forward_chunk,  silu_backward_chunk, softmax_forward_row,               \
                            softmax_backward_row, upsample_forward_plane, upsample_backward_plane};

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace kernels_avx512 {
#define DL_SIMD_AVX512
#include "tensor/cpu_simd.h"
#include "tensor/kernels_simd.h"
#undef DL_SIMD_AVX512
DL_KERNELS_TABLE
}  // namespace kernels_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace kernels_avx2 {
#define DL_SIMD_AVX2
#include "tensor/cpu_simd.h"
#include "tensor/kernels_simd.h"
#undef DL_SIMD_AVX2
DL_KERNELS_TABLE
}  // namespace kernels_avx2
#pragma GCC pop_options

namespace kernels_portable {
#include "tensor/cpu_simd.h"
#include "tensor/kernels_simd.h"
DL_KERNELS_TABLE
}  // namespace kernels_portable
#undef DL_KERNELS_TABLE

namespace {

const KernelsIsa& kisa() {
    switch (simd_level()) {
        case SimdLevel::AVX512: return kernels_avx512::kTable;
        case SimdLevel::AVX2: return kernels_avx2::kTable;
        default: return kernels_portable::kTable;
    }
}

int team(int64_t work) { return team_threads(work, 32768); }  // a thread per 32K elements

void gn_forward_f32(const float* x, const float* gamma, const float* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                    double eps, float* y, float* mean, float* rstd, bool silu) {
    const KernelsIsa& k = kisa();
    const int64_t cg = C / G;
#pragma omp parallel for schedule(static) num_threads(team(B * C * HW))
    for (int64_t bg = 0; bg < B * G; bg++) {
        const int64_t off = bg * cg * HW, g = bg % G;
        k.gn_forward_group(x + off, gamma + g * cg, beta + g * cg, cg, HW, eps, y + off, mean + bg, rstd + bg, silu);
    }
}

void gn_backward_f32(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                     int64_t B, int64_t C, int64_t HW, int64_t G, float* dx, float* dgamma, float* dbeta, bool accumulate,
                     const float* silu_beta, const float* silu_y) {
    if (silu_beta && !silu_y) fail("group_norm_backward: with silu_beta, the forward's output silu_y is needed too");
    const KernelsIsa& k = kisa();
    const int64_t cg = C / G;
    float* s1 = scratch(1, size_t(2 * B * C));  // per (image, channel): sum dy, then sum dy * xhat
    float* s2 = s1 + B * C;
#pragma omp parallel num_threads(team(B * C * HW))
    {
        // with SiLU, the group's dz = dy * silu'(z) first, into a buffer that stays in cache for both passes
        float* dz = silu_beta ? scratch(2, size_t(cg * HW)) : nullptr;
#pragma omp for schedule(static)
        for (int64_t bg = 0; bg < B * G; bg++) {
            const int64_t off = bg * cg * HW, g = bg % G;
            if (silu_beta)
                k.gn_silu_grad_group(x + off, gamma + g * cg, silu_beta + g * cg, mean[bg], rstd[bg], dy + off, silu_y + off, cg,
                                     HW, dz);
            k.gn_backward_group(x + off, gamma + g * cg, mean[bg], rstd[bg], silu_beta ? dz : dy + off, cg, HW, dx + off,
                                s1 + bg * cg, s2 + bg * cg, accumulate);
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int64_t i = 0; i < B; i++) a += s2[i * C + c], b += s1[i * C + c];
        if (dgamma) dgamma[c] += float(a);
        if (dbeta) dbeta[c] += float(b);
    }
}

// ---- generic templates: the float64 path and the reference -----------------------------------------

template <class T>
void group_norm_forward_generic(const T* x, const T* gamma, const T* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                        double eps, T* y, T* mean, T* rstd, bool silu) {
    const int64_t cg = C / G, N = cg * HW;
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            const T* xg = x + (b * C + g * cg) * HW;
            double s = 0, ss = 0;  // two-pass in double: mean first, then the centered squares
            for (int64_t k = 0; k < N; k++) s += double(xg[k]);
            double mu = s / double(N);
            for (int64_t k = 0; k < N; k++) ss += (double(xg[k]) - mu) * (double(xg[k]) - mu);
            double r = 1.0 / std::sqrt(ss / double(N) + eps);
            mean[b * G + g] = T(mu);
            rstd[b * G + g] = T(r);
            for (int64_t c = 0; c < cg; c++) {
                int64_t ch = g * cg + c;
                T scale = T(r) * gamma[ch], shift = beta[ch] - T(mu) * scale;
                const T* xc = xg + c * HW;
                T* yc = y + (b * C + ch) * HW;
                for (int64_t k = 0; k < HW; k++) {
                    const T z = xc[k] * scale + shift;
                    yc[k] = silu ? z / (T(1) + std::exp(-z)) : z;
                }
            }
        }
}

template <class T>
void group_norm_backward_generic(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, int64_t B, int64_t C,
                         int64_t HW, int64_t G, T* dx, T* dgamma, T* dbeta, bool accumulate, const T* silu_beta) {
    const int64_t cg = C / G, N = cg * HW;
    std::vector<T> dz;  // with SiLU: dy * silu'(z), z = gamma xhat + beta, s = sigmoid(z), silu' = s (1 + z (1 - s))
    if (silu_beta) {
        dz.resize(size_t(B * C * HW));
        for (int64_t i = 0; i < B * C * HW; i++) {
            const int64_t ch = i / HW % C, bg = i / HW / C * G + ch / cg;
            const double z = double(gamma[ch]) * (double(x[i]) - double(mean[bg])) * double(rstd[bg]) + double(silu_beta[ch]);
            const double sg = 1 / (1 + std::exp(-z));
            dz[size_t(i)] = T(double(dy[i]) * sg * (1 + z * (1 - sg)));
        }
        dy = dz.data();
    }
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            double mu = double(mean[b * G + g]), r = double(rstd[b * G + g]);
            double sum_dxhat = 0, sum_dxhat_xhat = 0;
            for (int64_t c = 0; c < cg; c++) {
                int64_t ch = g * cg + c;
                const T* xc = x + (b * C + ch) * HW;
                const T* dyc = dy + (b * C + ch) * HW;
                for (int64_t k = 0; k < HW; k++) {
                    double dxhat = double(dyc[k]) * double(gamma[ch]);
                    sum_dxhat += dxhat;
                    sum_dxhat_xhat += dxhat * (double(xc[k]) - mu) * r;
                }
            }
            double m1 = sum_dxhat / double(N), m2 = sum_dxhat_xhat / double(N);
            for (int64_t c = 0; c < cg; c++) {
                int64_t ch = g * cg + c;
                const T* xc = x + (b * C + ch) * HW;
                const T* dyc = dy + (b * C + ch) * HW;
                T* dxc = dx + (b * C + ch) * HW;
                for (int64_t k = 0; k < HW; k++) {
                    double xhat = (double(xc[k]) - mu) * r;
                    dxc[k] = (accumulate ? dxc[k] : T(0)) + T(r * (double(dyc[k]) * double(gamma[ch]) - m1 - xhat * m2));
                }
            }
        }
    if (!dgamma && !dbeta) return;
    // dgamma, dbeta: parallel over channels, the batch summed inside (no races)
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int64_t ch = 0; ch < C; ch++) {
        double sg = 0, sb = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t g = ch / cg;
            double mu = double(mean[b * G + g]), r = double(rstd[b * G + g]);
            const T* xc = x + (b * C + ch) * HW;
            const T* dyc = dy + (b * C + ch) * HW;
            for (int64_t k = 0; k < HW; k++) {
                sg += double(dyc[k]) * (double(xc[k]) - mu) * r;
                sb += double(dyc[k]);
            }
        }
        if (dgamma) dgamma[ch] += T(sg);
        if (dbeta) dbeta[ch] += T(sb);
    }
}

template <class T> void silu_forward_generic(const T* x, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (!omp_in_parallel() && n > 32768)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (T(1) + std::exp(-x[i]));
}

template <class T> void silu_backward_generic(const T* x, const T* dy, T* dx, int64_t n, bool accumulate) {
#pragma omp parallel for simd schedule(static) if (!omp_in_parallel() && n > 32768)
    for (int64_t i = 0; i < n; i++) {
        T s = T(1) / (T(1) + std::exp(-x[i]));
        dx[i] = (accumulate ? dx[i] : T(0)) + dy[i] * s * (T(1) + x[i] * (T(1) - s));
    }
}

template <class T> void upsample_nearest2d_forward_generic(const T* x, T* y, int64_t P, int64_t H, int64_t W) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && P * H * W > 8192)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < 2 * H; i++) {
            const T* xr = x + (p * H + i / 2) * W;
            T* yr = y + (p * 2 * H + i) * 2 * W;
            for (int64_t j = 0; j < 2 * W; j++) yr[j] = xr[j / 2];
        }
}

template <class T> void upsample_nearest2d_backward_generic(const T* dy, T* dx, int64_t P, int64_t H, int64_t W) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && P * H * W > 8192)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < H; i++) {
            const T* r0 = dy + (p * 2 * H + 2 * i) * 2 * W;
            const T* r1 = r0 + 2 * W;
            T* d = dx + (p * H + i) * W;
            for (int64_t j = 0; j < W; j++) d[j] += r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1];
        }
}

template <class T> void softmax_forward_generic(const T* x, T* y, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && rows * n > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const T* xr = x + r * n;
        T* yr = y + r * n;
        T m = *std::max_element(xr, xr + n);
        double s = 0;
        for (int64_t j = 0; j < n; j++) s += double(yr[j] = std::exp(xr[j] - m));
        T inv = T(1.0 / s);
        for (int64_t j = 0; j < n; j++) yr[j] *= inv;
    }
}

template <class T> void softmax_backward_generic(const T* y, const T* dy, T* dx, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && rows * n > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const T *yr = y + r * n, *dyr = dy + r * n;
        double dot = 0;
        for (int64_t j = 0; j < n; j++) dot += double(dyr[j]) * double(yr[j]);
        for (int64_t j = 0; j < n; j++) dx[r * n + j] += yr[j] * (dyr[j] - T(dot));
    }
}

}  // namespace

// ---- the public functions: float32 fast, float64 generic ----------------------------------------------

template <class T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                        double eps, T* y, T* mean, T* rstd, bool silu) {
    if constexpr (std::is_same_v<T, float>)
        gn_forward_f32(x, gamma, beta, B, C, HW, G, eps, y, mean, rstd, silu);
    else
        group_norm_forward_generic(x, gamma, beta, B, C, HW, G, eps, y, mean, rstd, silu);
}

template <class T>
void group_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, int64_t B, int64_t C,
                         int64_t HW, int64_t G, T* dx, T* dgamma, T* dbeta, bool accumulate, const T* silu_beta,
                         const T* silu_y) {
    if constexpr (std::is_same_v<T, float>)
        gn_backward_f32(x, gamma, mean, rstd, dy, B, C, HW, G, dx, dgamma, dbeta, accumulate, silu_beta, silu_y);
    else
        group_norm_backward_generic(x, gamma, mean, rstd, dy, B, C, HW, G, dx, dgamma, dbeta, accumulate, silu_beta);
}

template <class T> void silu_forward(const T* x, T* y, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        const KernelsIsa& k = kisa();
        const int nt = team(n);
        const int64_t chunk = (n + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int t = 0; t < nt; t++) k.silu_forward(x + t * chunk, y + t * chunk, std::max<int64_t>(0, std::min(chunk, n - t * chunk)));
    } else {
        silu_forward_generic(x, y, n);
    }
}

template <class T> void silu_backward(const T* x, const T* dy, T* dx, int64_t n, bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
        const KernelsIsa& k = kisa();
        const int nt = team(n);
        const int64_t chunk = (n + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int t = 0; t < nt; t++)
            k.silu_backward(x + t * chunk, dy + t * chunk, dx + t * chunk, std::max<int64_t>(0, std::min(chunk, n - t * chunk)),
                            accumulate);
    } else {
        silu_backward_generic(x, dy, dx, n, accumulate);
    }
}

template <class T> void upsample_nearest2d_forward(const T* x, T* y, int64_t P, int64_t H, int64_t W) {
    if constexpr (std::is_same_v<T, float>) {
        const KernelsIsa& k = kisa();
#pragma omp parallel for schedule(static) num_threads(team(4 * P * H * W))
        for (int64_t p = 0; p < P; p++) k.upsample_forward_plane(x + p * H * W, y + p * 4 * H * W, H, W);
    } else {
        upsample_nearest2d_forward_generic(x, y, P, H, W);
    }
}

template <class T> void upsample_nearest2d_backward(const T* dy, T* dx, int64_t P, int64_t H, int64_t W) {
    if constexpr (std::is_same_v<T, float>) {
        if (W < 8) return upsample_nearest2d_backward_generic(dy, dx, P, H, W);  // rows too short to vectorize (measured)
        const KernelsIsa& k = kisa();
#pragma omp parallel for schedule(static) num_threads(team(4 * P * H * W))
        for (int64_t p = 0; p < P; p++) k.upsample_backward_plane(dy + p * 4 * H * W, dx + p * H * W, H, W);
    } else {
        upsample_nearest2d_backward_generic(dy, dx, P, H, W);
    }
}

template <class T> void softmax_forward(const T* x, T* y, int64_t rows, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        const KernelsIsa& k = kisa();
#pragma omp parallel for schedule(static) num_threads(team(rows * n))
        for (int64_t r = 0; r < rows; r++) k.softmax_forward_row(x + r * n, y + r * n, n);
    } else {
        softmax_forward_generic(x, y, rows, n);
    }
}

template <class T> void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        const KernelsIsa& k = kisa();
#pragma omp parallel for schedule(static) num_threads(team(rows * n))
        for (int64_t r = 0; r < rows; r++) k.softmax_backward_row(y + r * n, dy + r * n, dx + r * n, n);
    } else {
        softmax_backward_generic(y, dy, dx, rows, n);
    }
}

#define INSTANTIATE(T)                                                                                             \
    template void group_norm_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                        T*, T*, T*, bool);                                                         \
    template void group_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,       \
                                         int64_t, int64_t, T*, T*, T*, bool, const T*, const T*);                  \
    template void silu_forward<T>(const T*, T*, int64_t);                                                          \
    template void silu_backward<T>(const T*, const T*, T*, int64_t, bool);                                         \
    template void upsample_nearest2d_forward<T>(const T*, T*, int64_t, int64_t, int64_t);                          \
    template void upsample_nearest2d_backward<T>(const T*, T*, int64_t, int64_t, int64_t);                         \
    template void softmax_forward<T>(const T*, T*, int64_t, int64_t);                                              \
    template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace dl
