// Reductions over dims.
//   y = sum_{reduced} x:   every x in a reduced slab contributes with slope 1, so
//                          dx = dy broadcast back over the reduced dims.
//   y = mean:              dx = dy / count, broadcast the same way.
//   y = max:               only the maximum moved y: dx[argmax] += dy, zero elsewhere
//                          (ties go to the first maximum, a subgradient).
#include "autograd/ops.h"
#include "tensor/ops.h"

namespace dl {

// The shape of the reduction's output with the reduced dims kept as 1.
static Shape kept_shape(const Shape& in, const std::vector<int>& dims) {
    Shape s = in;
    for (int d : dims) s[size_t(d)] = 1;
    return s;
}

Variable sum(const Variable& x, std::vector<int> dims, bool keepdim) {
    dims = normalize_dims(dims, int(x.shape().size()), "sum");
    Shape kept = kept_shape(x.shape(), dims);
    return make_result("sum", sum(x.value(), dims, keepdim), {x}, [x, kept](const Tensor& dy) {
        Tensor part = expand(dy.reshape(kept), x.shape());
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable mean(const Variable& x, std::vector<int> dims, bool keepdim) {
    dims = normalize_dims(dims, int(x.shape().size()), "mean");
    Shape kept = kept_shape(x.shape(), dims);
    double count = double(x.numel()) / double(shape_numel(kept));
    return make_result("mean", mean(x.value(), dims, keepdim), {x}, [x, kept, count](const Tensor& dy) {
        Tensor part = mul_scalar(expand(dy.reshape(kept), x.shape()), 1.0 / count);
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable max(const Variable& x, std::vector<int> dims, bool keepdim) {
    std::vector<int64_t> argmax;
    Tensor y = max(x.value(), dims, keepdim, &argmax);
    return make_result("max", y, {x}, [x, argmax](const Tensor& dy) {
        auto [dx, accumulate] = x.grad_slot();
        if (!accumulate) dx = Tensor::zeros(x.shape(), x.dtype());
        for (size_t o = 0; o < argmax.size(); o++) dx.set_flat(argmax[o], dx.flat(argmax[o]) + dy.flat(int64_t(o)));
    });
}

}  // namespace dl
