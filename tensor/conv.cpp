// conv2d on NCHW: the reference loops (conv2d_*_ref: the float64 path, the reference every fast
// path is tested against, and the whole of conv2d in the reference build, make REF=1) and the
// public functions, which hand float32 to the fast path of tensor/fast/ (direct SIMD tiles,
// Winograd, AMX; tensor/fast/conv.cpp plans each call).
// B batch, C channels, H x W input, Ho x Wo output, KH x KW kernel, stride s, zero padding pad.
#include "tensor/conv.h"

#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "tensor/tensor.h"
#ifndef DL_REF
#include "tensor/fast/fast.h"
#endif

namespace dl {

// ---- reference loops -----------------------------------------------------------------------------


template <class T> void conv2d_forward_ref(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y) {
    const int64_t Ho = p.Ho(), Wo = p.Wo();
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
    for (int64_t b = 0; b < p.B; b++)
        for (int64_t o = 0; o < p.Cout; o++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    T acc = bias ? bias[o] : T(0);
                    for (int64_t c = 0; c < p.Cin; c++)
                        for (int64_t kp = 0; kp < p.KH; kp++) {
                            int64_t hi = i * p.stride + kp - p.pad;
                            if (hi < 0 || hi >= p.H) continue;
                            for (int64_t kq = 0; kq < p.KW; kq++) {
                                int64_t wi = j * p.stride + kq - p.pad;
                                if (wi < 0 || wi >= p.W) continue;
                                acc += w[((o * p.Cin + c) * p.KH + kp) * p.KW + kq] * x[((b * p.Cin + c) * p.H + hi) * p.W + wi];
                            }
                        }
                    y[((b * p.Cout + o) * Ho + i) * Wo + j] = acc;
                }
}

template <class T> void conv2d_backward_data_ref(const Conv2dParams& p, const T* dy, const T* w, T* dx) {
    const int64_t Ho = p.Ho(), Wo = p.Wo();
    // parallel over (b, c): each thread owns whole input planes of dx
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
    for (int64_t b = 0; b < p.B; b++)
        for (int64_t c = 0; c < p.Cin; c++)
            for (int64_t o = 0; o < p.Cout; o++)
                for (int64_t i = 0; i < Ho; i++)
                    for (int64_t j = 0; j < Wo; j++) {
                        T g = dy[((b * p.Cout + o) * Ho + i) * Wo + j];
                        for (int64_t kp = 0; kp < p.KH; kp++) {
                            int64_t hi = i * p.stride + kp - p.pad;
                            if (hi < 0 || hi >= p.H) continue;
                            for (int64_t kq = 0; kq < p.KW; kq++) {
                                int64_t wi = j * p.stride + kq - p.pad;
                                if (wi < 0 || wi >= p.W) continue;
                                dx[((b * p.Cin + c) * p.H + hi) * p.W + wi] += w[((o * p.Cin + c) * p.KH + kp) * p.KW + kq] * g;
                            }
                        }
                    }
}

template <class T> void conv2d_backward_weight_ref(const Conv2dParams& p, const T* x, const T* dy, T* dw, T* dbias) {
    const int64_t Ho = p.Ho(), Wo = p.Wo();
    // parallel over (o, c): each thread owns whole filters of dw; the batch is summed inside
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
    for (int64_t o = 0; o < p.Cout; o++)
        for (int64_t c = 0; c < p.Cin; c++)
            for (int64_t kp = 0; kp < p.KH; kp++)
                for (int64_t kq = 0; kq < p.KW; kq++) {
                    T acc = 0;
                    for (int64_t b = 0; b < p.B; b++)
                        for (int64_t i = 0; i < Ho; i++) {
                            int64_t hi = i * p.stride + kp - p.pad;
                            if (hi < 0 || hi >= p.H) continue;
                            for (int64_t j = 0; j < Wo; j++) {
                                int64_t wi = j * p.stride + kq - p.pad;
                                if (wi < 0 || wi >= p.W) continue;
                                acc += x[((b * p.Cin + c) * p.H + hi) * p.W + wi] * dy[((b * p.Cout + o) * Ho + i) * Wo + j];
                            }
                        }
                    dw[((o * p.Cin + c) * p.KH + kp) * p.KW + kq] += acc;
                }
    if (dbias)
        for (int64_t o = 0; o < p.Cout; o++) {
            T acc = 0;
            for (int64_t b = 0; b < p.B; b++)
                for (int64_t k = 0; k < Ho * Wo; k++) acc += dy[(b * p.Cout + o) * Ho * Wo + k];
            dbias[o] += acc;
        }
}


namespace {
void check_params(const char* op, const Conv2dParams& p) {
    if (p.B < 0 || p.Cin <= 0 || p.Cout <= 0 || p.KH <= 0 || p.KW <= 0 || p.stride <= 0 || p.pad < 0 || p.Ho() <= 0 ||
        p.Wo() <= 0)
        fail(op, ": invalid parameters B=", p.B, " Cin=", p.Cin, " H=", p.H, " W=", p.W, " Cout=", p.Cout, " kernel ",
             p.KH, "x", p.KW, " stride ", p.stride, " pad ", p.pad);
}

}  // namespace

template <class T> void conv2d_forward(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y) {
    check_params("conv2d_forward", p);
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::conv2d_forward(p, x, w, bias, y);
#endif
    conv2d_forward_ref(p, x, w, bias, y);
}
template <class T> void conv2d_backward_data(const Conv2dParams& p, const T* dy, const T* w, T* dx, bool accumulate) {
    check_params("conv2d_backward_data", p);
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::conv2d_backward_data(p, dy, w, dx, accumulate);
#endif
    if (!accumulate) std::fill(dx, dx + p.B * p.Cin * p.H * p.W, T(0));
    conv2d_backward_data_ref(p, dy, w, dx);
}
template <class T> void conv2d_backward_weight(const Conv2dParams& p, const T* x, const T* dy, T* dw, T* dbias) {
    check_params("conv2d_backward_weight", p);
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::conv2d_backward_weight(p, x, dy, dw, dbias);
#endif
    conv2d_backward_weight_ref(p, x, dy, dw, dbias);
}
template <class T>
void conv2d_backward(const Conv2dParams& p, const T* x, const T* dy, const T* w, T* dx, bool accumulate, T* dw, T* dbias) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) {
        if (dx && fast::conv2d_backward_shared(p)) {
            check_params("conv2d_backward", p);
            return fast::conv2d_backward(p, x, dy, w, dx, accumulate, dw, dbias);
        }
    }
#endif
    if (dx) conv2d_backward_data(p, dy, w, dx, accumulate);
    conv2d_backward_weight(p, x, dy, dw, dbias);
}

#define INSTANTIATE(T)                                                                                \
    template void conv2d_forward_ref<T>(const Conv2dParams&, const T*, const T*, const T*, T*);      \
    template void conv2d_backward_data_ref<T>(const Conv2dParams&, const T*, const T*, T*);          \
    template void conv2d_backward_weight_ref<T>(const Conv2dParams&, const T*, const T*, T*, T*);    \
    template void conv2d_forward<T>(const Conv2dParams&, const T*, const T*, const T*, T*);          \
    template void conv2d_backward_data<T>(const Conv2dParams&, const T*, const T*, T*, bool);        \
    template void conv2d_backward_weight<T>(const Conv2dParams&, const T*, const T*, T*, T*);        \
    template void conv2d_backward<T>(const Conv2dParams&, const T*, const T*, const T*, T*, bool, T*, T*);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace dl
