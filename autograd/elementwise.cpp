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

static void accumulate_reduced(const Variable& x, const Tensor& g) {
    if (x.requires_grad()) x.accumulate_grad(sum_to_shape(g, x.shape()));
}

Variable add(const Variable& a, const Variable& b) {
    return make_result("add", add(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        accumulate_reduced(a, dz);
        accumulate_reduced(b, dz);
    });
}

Variable sub(const Variable& a, const Variable& b) {
    return make_result("sub", sub(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        accumulate_reduced(a, dz);
        if (b.requires_grad()) accumulate_reduced(b, neg(dz));
    });
}

Variable mul(const Variable& a, const Variable& b) {
    return make_result("mul", mul(a.value(), b.value()), {a, b}, [a, b](const Tensor& dz) {
        if (a.requires_grad()) accumulate_reduced(a, mul(dz, b.value()));
        if (b.requires_grad()) accumulate_reduced(b, mul(dz, a.value()));
    });
}

Variable div(const Variable& a, const Variable& b) {
    Tensor z = div(a.value(), b.value());
    return make_result("div", z, {a, b}, [a, b, z](const Tensor& dz) {
        if (a.requires_grad()) accumulate_reduced(a, div(dz, b.value()));
        if (b.requires_grad()) accumulate_reduced(b, neg(div(mul(dz, z), b.value())));
    });
}

// z = a + s: da = dz.   z = a * s: da = s dz.   z = -a: da = -dz.
Variable add(const Variable& a, double s) {
    return make_result("add_scalar", add_scalar(a.value(), s), {a}, [a](const Tensor& dz) { a.accumulate_grad(dz); });
}

Variable mul(const Variable& a, double s) {
    return make_result("mul_scalar", mul_scalar(a.value(), s), {a}, [a, s](const Tensor& dz) { axpy_(a.grad_buffer(), s, dz); });
}

Variable neg(const Variable& a) {
    return make_result("neg", neg(a.value()), {a}, [a](const Tensor& dz) { axpy_(a.grad_buffer(), -1.0, dz); });
}

}  // namespace dl
