// Elementwise functions y = f(x); backward is dx += dy * f'(x), with f' written through y where
// that is cheaper or more accurate (the product is x's gradient as it is when it is the first part):
//   exp:     f' = exp(x) = y             log:   f' = 1 / x
//   sqrt:    f' = 1 / (2 sqrt(x)) = 1/(2y)
//   sin:     f' = cos(x)                 cos:   f' = -sin(x)
//   tanh:    f' = 1 - tanh^2 = 1 - y^2
//   sigmoid: f' = s (1 - s) = y (1 - y)
//   silu:    y = x s(x), f' = s + x s (1 - s) = s (1 + x (1 - s))   (tensor/kernels.h)
//   square:  f' = 2x
#include "autograd/ops.h"
#include "tensor/kernels.h"
#include "tensor/ops.h"

namespace dl {

Variable exp(const Variable& x) {
    Tensor y = exp(x.value());
    return make_result("exp", y, {x}, [x, y](const Tensor& dy) {
        Tensor part = mul(dy, y);
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable log(const Variable& x) {
    return make_result("log", log(x.value()), {x}, [x](const Tensor& dy) {
        Tensor part = div(dy, x.value());
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable sqrt(const Variable& x) {
    Tensor y = sqrt(x.value());
    return make_result("sqrt", y, {x}, [x, y](const Tensor& dy) {
        Tensor part = div(mul_scalar(dy, 0.5), y);
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable sin(const Variable& x) {
    return make_result("sin", sin(x.value()), {x}, [x](const Tensor& dy) {
        Tensor part = mul(dy, cos(x.value()));
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable cos(const Variable& x) {
    return make_result("cos", cos(x.value()), {x}, [x](const Tensor& dy) {
        Tensor part = neg(mul(dy, sin(x.value())));
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable tanh(const Variable& x) {
    Tensor y = tanh(x.value());
    return make_result("tanh", y, {x}, [x, y](const Tensor& dy) {
        Tensor part = mul(dy, add_scalar(neg(square(y)), 1.0));  // dy (1 - y^2)
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable sigmoid(const Variable& x) {
    Tensor y = sigmoid(x.value());
    return make_result("sigmoid", y, {x}, [x, y](const Tensor& dy) {
        Tensor part = mul(dy, mul(y, add_scalar(neg(y), 1.0)));  // dy y (1 - y)
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable silu(const Variable& x) {
    Tensor y(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        silu_forward(x.value().data<T>(), y.data<T>(), y.numel());
    });
    return make_result("silu", y, {x}, [x](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            auto [dx, accumulate] = x.grad_slot();
            if (!accumulate) dx = Tensor(x.shape(), x.dtype());  // written whole
            silu_backward(x.value().data<T>(), dy.data<T>(), dx.data<T>(), dy.numel(), accumulate);
        });
    });
}

Variable square(const Variable& x) {
    return make_result("square", square(x.value()), {x}, [x](const Tensor& dy) {
        Tensor part = mul(dy, mul_scalar(x.value(), 2.0));
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

}  // namespace dl
