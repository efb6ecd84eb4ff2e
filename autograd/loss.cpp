// The DDPM loss, softmax, and the classifier's loss.
//   mse_loss: L = (1/n) sum (p - t)^2    dp = 2 (p - t) / n * dL,  dt = -dp
//   softmax over the last dim: y_j = exp(x_j) / sum_k exp(x_k)
//     dy_j/dx_i = y_j (delta_ij - y_i), so dx_i = y_i (dy_i - sum_j dy_j y_j)   (tensor/kernels.h)
//   cross_entropy of logits z (B, K) and labels y (B): L = -(1/B) sum_b log softmax(z_b)[y_b]
//     = (1/B) sum_b (logsumexp(z_b) - z_b[y_b]); d logsumexp(z)/dz_k = softmax(z)_k, so
//     dz_bk = (softmax(z_b)_k - [k == y_b]) / B * dL. The log-sum-exp subtracts max_k z_bk first.
#include <algorithm>
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
        for (auto [v, s] : {std::pair{pred, scale}, std::pair{target, -scale}}) {
            if (!v.requires_grad()) continue;
            auto [dv, accumulate] = v.grad_slot();
            if (!accumulate) dv = Tensor::zeros(v.shape(), v.dtype());  // axpy_ adds
            axpy_(dv, s, diff);
        }
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
            auto [dx, accumulate] = x.grad_slot();
            if (!accumulate) dx = Tensor::zeros(x.shape(), x.dtype());  // the kernel adds
            softmax_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, n);
        });
    });
}

Variable cross_entropy(const Variable& logits, const std::vector<int64_t>& labels) {
    const Shape& s = logits.shape();
    if (s.size() != 2 || s[0] != int64_t(labels.size()) || s[0] == 0)
        fail("cross_entropy: expected logits (B, K) and B labels, got ", shape_str(s), " and ", labels.size(), " labels");
    const int64_t B = s[0], K = s[1];
    for (int64_t y : labels)
        if (y < 0 || y >= K) fail("cross_entropy: label ", y, " is outside [0, ", K, ")");
    Tensor p(s, logits.dtype());  // (B, K) softmax, kept for backward
    double total = dispatch(logits.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* z = logits.value().data<T>();
        softmax_forward(z, p.data<T>(), B, K);
        double acc = 0;
        for (int64_t b = 0; b < B; b++) {
            double m = z[b * K];
            for (int64_t k = 1; k < K; k++) m = std::max(m, double(z[b * K + k]));
            double se = 0;
            for (int64_t k = 0; k < K; k++) se += std::exp(double(z[b * K + k]) - m);
            acc += m + std::log(se) - double(z[b * K + labels[size_t(b)]]);
        }
        return acc / double(B);
    });
    Tensor loss = Tensor::scalar(total, logits.dtype());
    return make_result("cross_entropy", loss, {logits}, [logits, p, labels, B, K](const Tensor& dl_) {
        dispatch(logits.dtype(), [&](auto tag) {
            using T = decltype(tag);
            const T* pp = p.data<T>();
            auto [g, accumulate] = logits.grad_slot();
            if (!accumulate) g = Tensor::zeros(logits.shape(), logits.dtype());  // the loop adds
            T* dz = g.data<T>();
            const double scale = dl_.item() / double(B);
            for (int64_t b = 0; b < B; b++)
                for (int64_t k = 0; k < K; k++)
                    dz[b * K + k] += T(scale * (double(pp[b * K + k]) - (k == labels[size_t(b)] ? 1.0 : 0.0)));
        });
    });
}

}  // namespace dl
