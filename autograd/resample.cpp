// Nearest-neighbour 2x upsampling (the official DDPM's upsampler, followed by a 3x3 conv):
// each input pixel is copied to a 2x2 block, so its gradient is the sum over that block.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace dl {

Variable upsample_nearest2d(const Variable& x) {
    const Shape& s = x.shape();
    if (s.size() != 4) fail("upsample_nearest2d: expected (B, C, H, W), got ", shape_str(s));
    int64_t P = s[0] * s[1], H = s[2], W = s[3];
    Tensor y({s[0], s[1], 2 * H, 2 * W}, x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        upsample_nearest2d_forward<T>(x.value().data<T>(), y.data<T>(), P, H, W);
    });
    return make_result("upsample_nearest2d", y, {x}, [x, P, H, W](const Tensor& dy) {
        dispatch(x.dtype(), [&](auto tag) {
            using T = decltype(tag);
            upsample_nearest2d_backward<T>(dy.data<T>(), x.grad_buffer().data<T>(), P, H, W);
        });
    });
}

}  // namespace dl
