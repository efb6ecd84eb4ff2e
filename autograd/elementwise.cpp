// Elementwise binary ops with NumPy broadcasting.
//
// z = f(a, b) computed on the broadcast shape. The chain rule gives dz * df/da on the broadcast
// shape; an input that was stretched along a dimension fed every position along it, so its
// gradient is that product summed back over the stretched dims (sum_to_shape).
//   z = a + b:  da = dz,          db = dz
//   z = a - b:  da = dz,          db = -dz
//   z = a * b:  da = dz * b,      db = dz * a
//   z = a / b:  da = dz / b,      db = -dz * a / b^2 = -dz * z / b
#include "autograd/ops.h"
#include "tensor/ops.h"

namespace dl {

// Hands x its part g (on the broadcast shape) summed back to x's shape. A part already of x's
// shape is taken as it is when it is x's first (dz itself for an add: no copy).
static void add_reduced(const Variable& x, const Tensor& g) {
    if (!x.requires_grad()) return;
    Tensor part = sum_to_shape(g, x.shape());
    auto [dx, accumulate] = x.grad_slot();
    if (accumulate) add_(dx, part);
    else dx = part;
}

Variable add(const Variable& a, const Variable& b) {
    return make_result("add", add(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        add_reduced(a, dz);
        add_reduced(b, dz);
    });
}

Variable sub(const Variable& a, const Variable& b) {
    return make_result("sub", sub(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        add_reduced(a, dz);
        if (b.requires_grad()) add_reduced(b, neg(dz));
    });
}

Variable mul(const Variable& a, const Variable& b) {
    return make_result("mul", mul(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        if (a.requires_grad()) add_reduced(a, mul(dz, b.value()));
        if (b.requires_grad()) add_reduced(b, mul(dz, a.value()));
    });
}

Variable div(const Variable& a, const Variable& b) {
    Tensor z = div(a.value(), b.value());
    return make_result("div", z, {a, b}, [a, b, z](const Tensor& dz) {
        if (a.requires_grad()) add_reduced(a, div(dz, b.value()));
        if (b.requires_grad()) add_reduced(b, neg(div(mul(dz, z), b.value())));
    });
}

// z = a + s: da = dz.   z = a * s: da = s dz.   z = -a: da = -dz.
Variable add(const Variable& a, double s) {
    return make_result("add_scalar", add_scalar(a.value(), s), {a}, [a](const Tensor& dz) { add_reduced(a, dz); });
}

Variable mul(const Variable& a, double s) {
    return make_result("mul_scalar", mul_scalar(a.value(), s), {a}, [a, s](const Tensor& dz) {
        auto [da, accumulate] = a.grad_slot();
        if (!accumulate) da = Tensor::zeros(a.shape(), a.dtype());  // axpy_ adds
        axpy_(da, s, dz);
    });
}

Variable neg(const Variable& a) {
    return make_result("neg", neg(a.value()), {a}, [a](const Tensor& dz) {
        auto [da, accumulate] = a.grad_slot();
        if (!accumulate) da = Tensor::zeros(a.shape(), a.dtype());
        axpy_(da, -1.0, dz);
    });
}

}  // namespace dl
