// Matrix products. With C = op(A) op(B), the chain rule gives
//   d op(A) = dC op(B)^T      d op(B) = op(A)^T dC
// and when an operand is stored transposed its gradient is the transpose of that:
//   trans_a: dA = (dC op(B)^T)^T = op(B) dC^T      trans_b: dB = (op(A)^T dC)^T = dC^T op(A)
// Each case is one product with the right transpose flags, so no transposed copy is made. The
// product is taken as the input's gradient when it is the first part and added otherwise.
#include "autograd/ops.h"
#include "tensor/gemm.h"
#include "tensor/ops.h"

namespace dl {

// The gradients of a product as calls of `mm` (matmul or bmm) with transpose flags.
template <class MM>
static void product_backward(MM mm, const Variable& a, const Variable& b, bool ta, bool tb, const Tensor& dc) {
    const Tensor &A = a.value(), &B = b.value();
    if (a.requires_grad()) {
        Tensor part = ta ? mm(B, dc, tb, true) : mm(dc, B, false, !tb);
        auto [da, accumulate] = a.grad_slot();
        if (accumulate) add_(da, part);
        else da = part;
    }
    if (b.requires_grad()) {
        Tensor part = tb ? mm(dc, A, true, ta) : mm(A, dc, !ta, false);
        auto [db, accumulate] = b.grad_slot();
        if (accumulate) add_(db, part);
        else db = part;
    }
}

Variable matmul(const Variable& a, const Variable& b, bool ta, bool tb) {
    return make_result("matmul", matmul(a.value(), b.value(), ta, tb), {a, b}, [a, b, ta, tb](const Tensor& dc) {
        product_backward([](const Tensor& x, const Tensor& y, bool tx, bool ty) { return matmul(x, y, tx, ty); }, a, b, ta, tb, dc);
    });
}

Variable bmm(const Variable& a, const Variable& b, bool ta, bool tb) {
    return make_result("bmm", bmm(a.value(), b.value(), ta, tb), {a, b}, [a, b, ta, tb](const Tensor& dc) {
        product_backward([](const Tensor& x, const Tensor& y, bool tx, bool ty) { return bmm(x, y, tx, ty); }, a, b, ta, tb, dc);
    });
}

// y = x W^T + b, fused: dx = dy W, dW = dy^T x, db = sum over rows of dy.
Variable linear(const Variable& x, const Variable& w, const Variable& bias) {
    if (x.shape().size() != 2 || w.shape().size() != 2 || x.shape()[1] != w.shape()[1])
        fail("linear: expected x (N, in) and weight (out, in), got ", shape_str(x.shape()), " and ", shape_str(w.shape()));
    if (bias.defined() && bias.shape() != Shape{w.shape()[0]})
        fail("linear: bias ", shape_str(bias.shape()), " does not match weight ", shape_str(w.shape()));
    Tensor y = matmul(x.value(), w.value(), false, true);  // (N, out)
    if (bias.defined()) y = add(y, bias.value());
    std::vector<Variable> inputs{x, w};
    if (bias.defined()) inputs.push_back(bias);
    return make_result("linear", y, inputs, [x, w, bias](const Tensor& dy) {
        if (x.requires_grad()) {
            Tensor part = matmul(dy, w.value());
            auto [dx, accumulate] = x.grad_slot();
            if (accumulate) add_(dx, part);
            else dx = part;
        }
        if (w.requires_grad()) {
            Tensor part = matmul(dy, x.value(), true, false);
            auto [dw, accumulate] = w.grad_slot();
            if (accumulate) add_(dw, part);
            else dw = part;
        }
        if (bias.defined() && bias.requires_grad()) {
            Tensor part = sum(dy, {0});
            auto [db, accumulate] = bias.grad_slot();
            if (accumulate) add_(db, part);
            else db = part;
        }
    });
}

}  // namespace dl
