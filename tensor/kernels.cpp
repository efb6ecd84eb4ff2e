// GroupNorm, SiLU, nearest 2x upsampling and softmax on raw arrays (kernels.h).
//
// The templates below are plain loops with double accumulators: the float64 path, the reference
// the tests hold the float32 path to, and the whole of these kernels in the reference build
// (make REF=1). float32 otherwise goes to the SIMD kernels of tensor/fast/kernels.cpp.
#include "tensor/kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/tensor.h"
#ifndef DL_REF
#include "tensor/fast/fast.h"
#endif

namespace dl {

namespace {

template <class T>
void group_norm_forward_ref(const T* x, const T* gamma, const T* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
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
void group_norm_backward_ref(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, int64_t B, int64_t C,
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

template <class T> void silu_forward_ref(const T* x, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (!omp_in_parallel() && n > 32768)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (T(1) + std::exp(-x[i]));
}

template <class T> void silu_backward_ref(const T* x, const T* dy, T* dx, int64_t n, bool accumulate) {
#pragma omp parallel for simd schedule(static) if (!omp_in_parallel() && n > 32768)
    for (int64_t i = 0; i < n; i++) {
        T s = T(1) / (T(1) + std::exp(-x[i]));
        dx[i] = (accumulate ? dx[i] : T(0)) + dy[i] * s * (T(1) + x[i] * (T(1) - s));
    }
}

template <class T> void upsample_nearest2d_forward_ref(const T* x, T* y, int64_t P, int64_t H, int64_t W) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && P * H * W > 8192)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < 2 * H; i++) {
            const T* xr = x + (p * H + i / 2) * W;
            T* yr = y + (p * 2 * H + i) * 2 * W;
            for (int64_t j = 0; j < 2 * W; j++) yr[j] = xr[j / 2];
        }
}

template <class T> void upsample_nearest2d_backward_ref(const T* dy, T* dx, int64_t P, int64_t H, int64_t W) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && P * H * W > 8192)
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < H; i++) {
            const T* r0 = dy + (p * 2 * H + 2 * i) * 2 * W;
            const T* r1 = r0 + 2 * W;
            T* d = dx + (p * H + i) * W;
            for (int64_t j = 0; j < W; j++) d[j] += r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1];
        }
}

template <class T> void softmax_forward_ref(const T* x, T* y, int64_t rows, int64_t n) {
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

template <class T> void softmax_backward_ref(const T* y, const T* dy, T* dx, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && rows * n > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const T *yr = y + r * n, *dyr = dy + r * n;
        double dot = 0;
        for (int64_t j = 0; j < n; j++) dot += double(dyr[j]) * double(yr[j]);
        for (int64_t j = 0; j < n; j++) dx[r * n + j] += yr[j] * (dyr[j] - T(dot));
    }
}

}  // namespace

// ---- the public functions: float32 to tensor/fast/ (unless make REF=1), float64 to the loops above ----

template <class T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                        double eps, T* y, T* mean, T* rstd, bool silu) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>)
        return fast::group_norm_forward(x, gamma, beta, B, C, HW, G, eps, y, mean, rstd, silu);
#endif
    group_norm_forward_ref(x, gamma, beta, B, C, HW, G, eps, y, mean, rstd, silu);
}

template <class T>
void group_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, int64_t B, int64_t C,
                         int64_t HW, int64_t G, T* dx, T* dgamma, T* dbeta, bool accumulate, const T* silu_beta,
                         const T* silu_y) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>)
        return fast::group_norm_backward(x, gamma, mean, rstd, dy, B, C, HW, G, dx, dgamma, dbeta, accumulate,
                                         silu_beta, silu_y);
#endif
    group_norm_backward_ref(x, gamma, mean, rstd, dy, B, C, HW, G, dx, dgamma, dbeta, accumulate, silu_beta);
}

template <class T> void silu_forward(const T* x, T* y, int64_t n) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::silu_forward(x, y, n);
#endif
    silu_forward_ref(x, y, n);
}

template <class T> void silu_backward(const T* x, const T* dy, T* dx, int64_t n, bool accumulate) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::silu_backward(x, dy, dx, n, accumulate);
#endif
    silu_backward_ref(x, dy, dx, n, accumulate);
}

template <class T> void upsample_nearest2d_forward(const T* x, T* y, int64_t P, int64_t H, int64_t W) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::upsample_nearest2d_forward(x, y, P, H, W);
#endif
    upsample_nearest2d_forward_ref(x, y, P, H, W);
}

template <class T> void upsample_nearest2d_backward(const T* dy, T* dx, int64_t P, int64_t H, int64_t W) {
#ifndef DL_REF
    // rows of fewer than 8 inputs are too short to vectorize (measured): the loop serves them
    if constexpr (std::is_same_v<T, float>)
        if (W >= 8) return fast::upsample_nearest2d_backward(dy, dx, P, H, W);
#endif
    upsample_nearest2d_backward_ref(dy, dx, P, H, W);
}

template <class T> void softmax_forward(const T* x, T* y, int64_t rows, int64_t n) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::softmax_forward(x, y, rows, n);
#endif
    softmax_forward_ref(x, y, rows, n);
}

template <class T> void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::softmax_backward(y, dy, dx, rows, n);
#endif
    softmax_backward_ref(y, dy, dx, rows, n);
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
