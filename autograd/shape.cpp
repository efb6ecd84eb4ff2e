// Ops that move values without changing them; their backward moves gradients back.
//   reshape:  a view; dx = dy viewed in x's shape
//   concat:   each input gets its own slab of dy along the dim
//   slice:    dx is zero except the slab that was taken, which gets dy
//   permute:  dx = dy permuted by the inverse permutation
//   gather:   out[i] = src[index[i]]; dsrc[index[i]] += dout[i] (repeated rows add up)
#include "autograd/ops.h"
#include "tensor/ops.h"

namespace dl {

Variable reshape(const Variable& x, Shape shape) {
    return make_result("reshape", x.value().reshape(std::move(shape)), {x}, [x](const Tensor& dy) {
        Tensor part = dy.reshape(x.shape());  // a view: no copy
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable concat(const std::vector<Variable>& xs, int dim) {
    std::vector<Tensor> values;
    for (const Variable& x : xs) values.push_back(x.value());
    Tensor y = concat(values, dim);
    if (dim < 0) dim += y.ndim();
    return make_result("concat", y, xs, [xs, dim](const Tensor& dy) {
        int64_t start = 0;
        for (const Variable& x : xs) {
            int64_t len = x.shape()[size_t(dim)];
            if (x.requires_grad()) {
                Tensor part = slice(dy, dim, start, start + len);
                auto [dx, accumulate] = x.grad_slot();
                if (accumulate) add_(dx, part);
                else dx = part;
            }
            start += len;
        }
    });
}

Variable slice(const Variable& x, int dim, int64_t start, int64_t end) {
    Tensor y = slice(x.value(), dim, start, end);
    if (dim < 0) dim += x.value().ndim();
    return make_result("slice", y, {x}, [x, dim, start](const Tensor& dy) {
        auto [dx, accumulate] = x.grad_slot();
        if (!accumulate) dx = Tensor::zeros(x.shape(), x.dtype());  // slice_backward_ adds
        slice_backward_(dx, dy, dim, start);
    });
}

Variable permute(const Variable& x, const std::vector<int>& dims) {
    Tensor y = permute(x.value(), dims);
    std::vector<int> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); i++) inverse[size_t(dims[i])] = int(i);
    return make_result("permute", y, {x}, [x, inverse](const Tensor& dy) {
        Tensor part = permute(dy, inverse);
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

Variable gather(const Variable& src, const std::vector<int64_t>& index) {
    return make_result("gather", gather(src.value(), index), {src}, [src, index](const Tensor& dy) {
        auto [dsrc, accumulate] = src.grad_slot();
        if (!accumulate) dsrc = Tensor::zeros(src.shape(), src.dtype());  // scatter_add_ adds
        scatter_add_(dsrc, index, dy);
    });
}

}  // namespace dl
