// GroupNorm as an autograd op, alone or followed by SiLU in the same node (group_norm_silu); the
// forward and backward math is derived in tensor/kernels.h. The per-(sample, group) mean and rstd
// are kept from forward for backward; with SiLU the normalized values are recomputed from them, not
// kept, and the float kernel reads the sigmoid off the output (the closure's reference to it costs
// no memory: the closure is dropped when this node's backward has run, and the node's own value
// is the same storage until then).
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace dl {

Variable group_norm(const Variable& x, const Variable& gamma, const Variable& beta, int64_t groups, double eps, bool silu) {
    const Shape& s = x.shape();
    if (s.size() < 2) fail("group_norm: expected x (B, C, ...), got ", shape_str(s));
    int64_t B = s[0], C = s[1], HW = x.numel() / std::max<int64_t>(B * C, 1);
    if (groups < 1 || C % groups) fail("group_norm: ", C, " channels do not split into ", groups, " groups");
    if (gamma.shape() != Shape{C} || beta.shape() != Shape{C})
        fail("group_norm: expected gamma and beta (", C, "), got ", shape_str(gamma.shape()), " and ", shape_str(beta.shape()));
    if (x.dtype() != gamma.dtype() || x.dtype() != beta.dtype()) fail("group_norm: dtypes of x, gamma and beta differ");

    Tensor y(s, x.dtype());
    Tensor mean({B, groups}, x.dtype()), rstd({B, groups}, x.dtype());  // (B, G) each
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        group_norm_forward<T>(x.value().data<T>(), gamma.value().data<T>(), beta.value().data<T>(), B, C, HW, groups, eps,
                              y.data<T>(), mean.data<T>(), rstd.data<T>(), silu);
    });
    return make_result(silu ? "group_norm_silu" : "group_norm", y, {x, gamma, beta},
                       [x, gamma, beta, mean, rstd, B, C, HW, groups, silu, y_kept = silu ? y : Tensor()](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            // dx is always computed into a buffer (the kernel's dx pass is the bulk of the work): x's
            // gradient, written (=) when it is the first part and added to (+=) otherwise, or scratch.
            Tensor dx;
            bool acc = false;
            if (x.requires_grad()) {
                auto [g, accumulate] = x.grad_slot();
                if (!accumulate) g = Tensor(x.shape(), x.dtype());  // written whole
                dx = g, acc = accumulate;
            } else {
                dx = Tensor(x.shape(), x.dtype());
            }
            // dgamma and dbeta are added to, from zero when first (a parameter's attached buffer never is)
            auto add_target = [](const Variable& v) -> T* {
                if (!v.requires_grad()) return nullptr;
                auto [g, accumulate] = v.grad_slot();
                if (!accumulate) g = Tensor::zeros(v.shape(), v.dtype());
                return g.data<T>();
            };
            group_norm_backward<T>(x.value().data<T>(), gamma.value().data<T>(), mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                                   B, C, HW, groups, dx.data<T>(), add_target(gamma), add_target(beta), acc,
                                   silu ? beta.value().data<T>() : nullptr, silu ? y_kept.data<T>() : nullptr);
        });
    });
}

}  // namespace dl
