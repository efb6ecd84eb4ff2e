// The U-Net's other kernels on raw arrays: GroupNorm, SiLU, nearest 2x upsampling, softmax.
// B batch, C channels, G groups, HW = H*W positions. Forward overwrites its output; backward
// accumulates (+=) into the gradients it is given, or with accumulate = false overwrites dx. float
// is the fast path (SIMD, OpenMP; run on the calling thread only inside a parallel region); double
// runs plain loops, the reference in tests.
#pragma once
#include <cstdint>

namespace dl {

// GroupNorm (Wu and He 2018). Per sample b and group g (C/G channels x HW positions, N values):
//   mean = sum x / N,  rstd = 1 / sqrt(sum (x - mean)^2 / N + eps),  xhat = (x - mean) * rstd
//   y[b,c,:] = gamma[c] * xhat + beta[c]
// x, y (B, C, HW); gamma, beta (C); mean, rstd (B, G) are saved for backward.
// With silu, y = silu(gamma xhat + beta): the U-Net's norm -> activation pairs in one pass, without
// writing and reading back the normalized tensor in between.
template <class T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                        double eps, T* y, T* mean, T* rstd, bool silu = false);
// With dxhat = dy * gamma[c], the gradient through mean and rstd is
//   dx = rstd * (dxhat - mean_N(dxhat) - xhat * mean_N(dxhat * xhat))
// and dgamma[c] = sum_{b,hw} dy * xhat, dbeta[c] = sum_{b,hw} dy. dgamma/dbeta may be null.
// With silu_beta (the forward's beta), dy is the gradient of silu(gamma xhat + beta): the chain rule
// through the activation, dz = dy * silu'(z) at z = gamma xhat + beta (recomputed from x and the
// statistics), takes dy's place above. silu_y (B, C, HW), the forward's output z sigmoid(z), must
// come with it: float takes the sigmoid from it as y / z; double, the reference, recomputes exp(-z).
template <class T>
void group_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, int64_t B, int64_t C,
                         int64_t HW, int64_t G, T* dx, T* dgamma, T* dbeta, bool accumulate = true,
                         const T* silu_beta = nullptr, const T* silu_y = nullptr);

// SiLU: y = x * s, s = sigmoid(x);  dy/dx = s * (1 + x * (1 - s)).
template <class T> void silu_forward(const T* x, T* y, int64_t n);
template <class T> void silu_backward(const T* x, const T* dy, T* dx, int64_t n, bool accumulate = true);

// Nearest 2x upsampling of planes: x (P, H, W) -> y (P, 2H, 2W), y[p, i, j] = x[p, i/2, j/2].
// Backward: each input pixel collects the 4 output pixels it was copied to.
template <class T> void upsample_nearest2d_forward(const T* x, T* y, int64_t P, int64_t H, int64_t W);
template <class T> void upsample_nearest2d_backward(const T* dy, T* dx, int64_t P, int64_t H, int64_t W);

// Softmax over the last dim of (rows, n): y = exp(x - max) / sum exp(x - max).
// Backward: dx = y * (dy - sum_j dy_j y_j).
template <class T> void softmax_forward(const T* x, T* y, int64_t rows, int64_t n);
template <class T> void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n);

}  // namespace dl
