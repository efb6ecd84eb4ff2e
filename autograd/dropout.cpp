// Inverted dropout (Srivastava et al. 2014): y = x * m, m = [u >= p] / (1 - p), u ~ U(0,1)
// from the counter-based generator, so masks are reproducible. dx = dy * m.
#include "autograd/ops.h"
#include "tensor/ops.h"

namespace dl {

Variable dropout(const Variable& x, double p, Philox& gen, bool training) {
    if (!(p >= 0 && p < 1)) fail("dropout: p must be in [0, 1), got ", p);
    if (!training || p == 0) return x;
    Tensor mask(x.shape(), x.dtype());  // same shape as x: 0 or 1/(1-p)
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* m = mask.data<T>();
        gen.uniform(m, mask.numel());
        T keep = T(1.0 / (1.0 - p));
        for (int64_t i = 0; i < mask.numel(); i++) m[i] = m[i] >= T(p) ? keep : T(0);
    });
    return make_result("dropout", mul(x.value(), mask), {x}, [x, mask](const Tensor& dy) {
        Tensor part = mul(dy, mask);
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, part);
        else dx = part;
    });
}

}  // namespace dl
