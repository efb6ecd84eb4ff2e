// The DDPM loss and softmax.
//   mse_loss: L = (1/n) sum (p - t)^2    dp = 2 (p - t) / n * dL,  dt = -dp
//   softmax over the last dim: y_j = exp(x_j) / sum_k exp(x_k)
//     dy_j/dx_i = y_j (delta_ij - y_i), so dx_i = y_i (dy_i - sum_j dy_j y_j)   (tensor/kernels.h)
#include <cmath>

#include "autograd/ops.h"
#include "tensor/kernels.h"
#include "tensor/ops.h"

namespace dl {

Variable mse_loss(const Variable& pred, const Variable& target) {
    check_same_dtype(pred.value(), target.value(), "mse_loss");
    check_same_shape(pred.value(), target.value(), "mse_loss");
    Tensor diff = sub(pred.value(), target.value());  // (p - t), kept for backward
    int64_t n = diff.numel();
    double total = dispatch(diff.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* d = diff.data<T>();
        double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) s += double(d[i]) * double(d[i]);
        return s;
    });
    Tensor loss = Tensor::scalar(total / double(n), diff.dtype());
    return make_result("mse_loss", loss, {pred, target}, [pred, target, diff, n](const Tensor& dl_) {
        double scale = 2.0 * dl_.item() / double(n);
        if (pred.requires_grad()) axpy_(pred.grad_buffer(), scale, diff);
        if (target.requires_grad()) axpy_(target.grad_buffer(), -scale, diff);
    });
}

Variable softmax(const Variable& x) {
    if (x.shape().empty()) fail("softmax: expected at least 1 dim, got a scalar");
    int64_t n = x.shape().back(), rows = x.numel() / std::max<int64_t>(n, 1);
    Tensor y(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        softmax_forward(x.value().data<T>(), y.data<T>(), rows, n);
    });
    return make_result("softmax", y, {x}, [x, y, rows, n](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            softmax_backward(y.data<T>(), dy.data<T>(), x.grad_buffer().data<T>(), rows, n);
        });
    });
}

}  // namespace dl
