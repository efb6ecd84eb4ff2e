// 2-d convolution (cross-correlation, as PyTorch's conv2d), NCHW, zero padding.
// B batch, Cin/Cout channels, H/W input size, KH/KW kernel size, Ho/Wo output size.
//
//   y[b,o,i,j] = bias[o] + sum_{c,p,q} w[o,c,p,q] * x[b, c, i*stride + p - pad, j*stride + q - pad]
//
// Backward, from the same sum:
//   dx[b,c,i*s+p-pad, j*s+q-pad] += w[o,c,p,q] * dy[b,o,i,j]   (backward to the input)
//   dw[o,c,p,q] += x[b,c,i*s+p-pad, j*s+q-pad] * dy[b,o,i,j]   (backward to the weight)
//   dbias[o]    += dy[b,o,i,j]
//
// The *_ref functions are the loops above, the reference for tests and the float64 path; the
// plain names are the fast float32 path (and fall through to the reference for double).
// Forward overwrites y; the backward functions accumulate (+=) into dx, dw, dbias (backward-data
// overwrites dx instead with accumulate = false).
#pragma once
#include <cstdint>

namespace dl {

struct Conv2dParams {
    int64_t B, Cin, H, W;  // input (B, Cin, H, W)
    int64_t Cout, KH, KW;  // weight (Cout, Cin, KH, KW)
    int64_t stride = 1, pad = 0;
    int64_t Ho() const { return (H + 2 * pad - KH) / stride + 1; }
    int64_t Wo() const { return (W + 2 * pad - KW) / stride + 1; }
    double flops() const { return 2.0 * double(B * Cout * Ho() * Wo() * Cin * KH * KW); }  // forward FLOPs
};

template <class T> void conv2d_forward_ref(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y);
template <class T> void conv2d_backward_data_ref(const Conv2dParams& p, const T* dy, const T* w, T* dx);
template <class T> void conv2d_backward_weight_ref(const Conv2dParams& p, const T* x, const T* dy, T* dw, T* dbias);

template <class T> void conv2d_forward(const Conv2dParams& p, const T* x, const T* w, const T* bias, T* y);
template <class T> void conv2d_backward_data(const Conv2dParams& p, const T* dy, const T* w, T* dx, bool accumulate = true);
template <class T> void conv2d_backward_weight(const Conv2dParams& p, const T* x, const T* dy, T* dw, T* dbias);
// Both: dx (= or +=; skipped if null) and dw, dbias (+=), as the two calls above give them; Winograd
// (Precision::WINOGRAD) shares its copies of dy between the two.
template <class T>
void conv2d_backward(const Conv2dParams& p, const T* x, const T* dy, const T* w, T* dx, bool accumulate, T* dw, T* dbias);

}  // namespace dl
