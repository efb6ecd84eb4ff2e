#include "tensor/conv.h"

namespace dl {

template <class T> void conv2d_forward_ref(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y) {
    const int64_t Ho = p.Ho(), Wo = p.Wo();
#pragma omp parallel for collapse(2) schedule(static)
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
#pragma omp parallel for collapse(2) schedule(static)
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
#pragma omp parallel for collapse(2) schedule(static)
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

template <class T> void conv2d_forward(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y) {
    conv2d_forward_ref(p, x, w, bias, y);
}
template <class T> void conv2d_backward_data(const Conv2dParams& p, const T* dy, const T* w, T* dx) {
    conv2d_backward_data_ref(p, dy, w, dx);
}
template <class T> void conv2d_backward_weight(const Conv2dParams& p, const T* x, const T* dy, T* dw, T* dbias) {
    conv2d_backward_weight_ref(p, x, dy, dw, dbias);
}

#define INSTANTIATE(T)                                                                                \
    template void conv2d_forward_ref<T>(const Conv2dParams&, const T*, const T*, const T*, T*);      \
    template void conv2d_backward_data_ref<T>(const Conv2dParams&, const T*, const T*, T*);          \
    template void conv2d_backward_weight_ref<T>(const Conv2dParams&, const T*, const T*, T*, T*);    \
    template void conv2d_forward<T>(const Conv2dParams&, const T*, const T*, const T*, T*);          \
    template void conv2d_backward_data<T>(const Conv2dParams&, const T*, const T*, T*);              \
    template void conv2d_backward_weight<T>(const Conv2dParams&, const T*, const T*, T*, T*);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace dl
