// Resampling images (B, C, H, W):
//   upsample_nearest2d (the official DDPM's upsampler, followed by a 3x3 conv): each input pixel
//     is copied to a 2x2 block, so its gradient is the sum over that block.
//   avg_pool2d (the evaluation classifier's downsampler): y[b,c,i,j] = (1/k^2) sum_{p,q<k}
//     x[b,c,ik+p,jk+q], so dx[b,c,ik+p,jk+q] += dy[b,c,i,j] / k^2; rows and columns past the last
//     whole window are dropped (PyTorch's floor mode) and get no gradient.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace dl {

Variable upsample_nearest2d(const Variable& x) {
    const Shape& s = x.shape();
    if (s.size() != 4) fail("upsample_nearest2d: expected (B, C, H, W), got ", shape_str(s));
    int64_t P = s[0] * s[1], H = s[2], W = s[3];
    Tensor y({s[0], s[1], 2 * H, 2 * W}, x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        upsample_nearest2d_forward<T>(x.value().data<T>(), y.data<T>(), P, H, W);
    });
    return make_result("upsample_nearest2d", y, {x}, [x, P, H, W](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            auto [dx, accumulate] = x.grad_slot();
            if (!accumulate) dx = Tensor::zeros(x.shape(), x.dtype());  // the kernel adds
            upsample_nearest2d_backward<T>(dy.data<T>(), dx.data<T>(), P, H, W);
        });
    });
}

Variable avg_pool2d(const Variable& x, int64_t k) {
    const Shape& s = x.shape();
    if (s.size() != 4 || k < 1 || s[2] < k || s[3] < k)
        fail("avg_pool2d: expected (B, C, H, W) with H, W >= k >= 1, got ", shape_str(s), " and k = ", k);
    const int64_t P = s[0] * s[1], H = s[2], W = s[3], Ho = H / k, Wo = W / k;
    Tensor y({s[0], s[1], Ho, Wo}, x.dtype());  // (B, C, H/k, W/k)
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* in = x.value().data<T>();
        T* out = y.data<T>();
        const T scale = T(1) / T(k * k);
#pragma omp parallel for schedule(static) if (P * H * W > 65536)
        for (int64_t pl = 0; pl < P; pl++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    T acc = 0;
                    for (int64_t p = 0; p < k; p++)
                        for (int64_t q = 0; q < k; q++) acc += in[(pl * H + i * k + p) * W + j * k + q];
                    out[(pl * Ho + i) * Wo + j] = acc * scale;
                }
    });
    return make_result("avg_pool2d", y, {x}, [x, P, H, W, Ho, Wo, k](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            const T* g = dy.data<T>();
            auto [grad, accumulate] = x.grad_slot();
            if (!accumulate) grad = Tensor::zeros(x.shape(), x.dtype());  // the loop adds
            T* dx = grad.data<T>();
            const T scale = T(1) / T(k * k);
#pragma omp parallel for schedule(static) if (P * H * W > 65536)
            for (int64_t pl = 0; pl < P; pl++)
                for (int64_t i = 0; i < Ho; i++)
                    for (int64_t j = 0; j < Wo; j++) {
                        T d = g[(pl * Ho + i) * Wo + j] * scale;
                        for (int64_t p = 0; p < k; p++)
                            for (int64_t q = 0; q < k; q++) dx[(pl * H + i * k + p) * W + j * k + q] += d;
                    }
        });
    });
}

}  // namespace dl
