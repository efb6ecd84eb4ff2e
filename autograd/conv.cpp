// conv2d as an autograd op over the kernels of tensor/conv.h, which derives the three
// gradients (to the input, the weight and the bias) from the defining sum.
// B batch, Cin/Cout channels, H/W input size, K kernel size.
#include "autograd/ops.h"
#include "tensor/conv.h"

namespace dl {

Variable conv2d(const Variable& x, const Variable& w, const Variable& bias, int64_t stride, int64_t pad) {
    const Shape &xs = x.shape(), &ws = w.shape();
    if (xs.size() != 4 || ws.size() != 4 || xs[1] != ws[1])
        fail("conv2d: expected x (B, Cin, H, W) and weight (Cout, Cin, KH, KW), got ", shape_str(xs), " and ", shape_str(ws));
    if (bias.defined() && bias.shape() != Shape{ws[0]})
        fail("conv2d: bias ", shape_str(bias.shape()), " does not match weight ", shape_str(ws));
    if (x.dtype() != w.dtype() || (bias.defined() && bias.dtype() != w.dtype()))
        fail("conv2d: dtypes differ: x ", dtype_name(x.dtype()), ", weight ", dtype_name(w.dtype()));
    if (stride < 1 || pad < 0) fail("conv2d: stride must be >= 1 and pad >= 0, got stride ", stride, " pad ", pad);
    Conv2dParams p{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], stride, pad};
    if (p.Ho() < 1 || p.Wo() < 1)
        fail("conv2d: input ", shape_str(xs), " is smaller than the ", ws[2], "x", ws[3], " kernel with pad ", pad);

    Tensor y({p.B, p.Cout, p.Ho(), p.Wo()}, x.dtype());  // (B, Cout, Ho, Wo)
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        conv2d_forward<T>(p, x.value().data<T>(), w.value().data<T>(), bias.defined() ? bias.value().data<T>() : nullptr, y.data<T>());
    });
    std::vector<Variable> inputs{x, w};
    if (bias.defined()) inputs.push_back(bias);
    return make_result("conv2d", y, inputs, [x, w, bias, p](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            // dx is written (=) when it is x's first part and added to (+=) otherwise
            T* dx = nullptr;
            bool acc = false;
            if (x.requires_grad()) {
                auto [g, accumulate] = x.grad_slot();
                if (!accumulate) g = Tensor(x.shape(), x.dtype());  // written whole
                dx = g.data<T>(), acc = accumulate;
            }
            // dw and dbias are added to, from zero when first (a parameter's attached buffer never is)
            auto add_target = [](const Variable& v) -> T* {
                auto [g, accumulate] = v.grad_slot();
                if (!accumulate) g = Tensor::zeros(v.shape(), v.dtype());
                return g.data<T>();
            };
            const bool need_b = bias.defined() && bias.requires_grad();
            if (w.requires_grad() || need_b) {  // both passes in one call (Winograd shares its copies of dy)
                Tensor scratch = w.requires_grad() ? Tensor() : Tensor::zeros(w.shape(), w.dtype());  // dw that no one needs
                conv2d_backward<T>(p, x.value().data<T>(), dy.data<T>(), w.value().data<T>(), dx, acc,
                                   w.requires_grad() ? add_target(w) : scratch.data<T>(), need_b ? add_target(bias) : nullptr);
            } else if (dx) {
                conv2d_backward_data<T>(p, dy.data<T>(), w.value().data<T>(), dx, acc);
            }
        });
    });
}

}  // namespace dl
