#include "nn/layers.h"

#include <cmath>

#include "autograd/ops.h"

namespace dl::nn {

Tensor uniform_init(Shape shape, double bound, Philox& gen) {
    Tensor t(std::move(shape), DType::F32);
    float* p = t.data<float>();
    gen.uniform(p, t.numel());  // u in (0, 1)
    for (int64_t i = 0; i < t.numel(); i++) p[i] = float((2.0 * p[i] - 1.0) * bound);
    return t;
}

Linear::Linear(int64_t in_features, int64_t out_features, Philox& gen) {
    double bound = 1.0 / std::sqrt(double(in_features));
    weight = register_parameter("weight", uniform_init({out_features, in_features}, bound, gen));
    bias = register_parameter("bias", uniform_init({out_features}, bound, gen));
}

Variable Linear::forward(const Variable& x) const {
    auto scope = name_scope();
    return linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t dim, Philox& gen) {
    weight = register_parameter("weight", randn({num, dim}, gen));
}

Variable Embedding::forward(const std::vector<int64_t>& index) const {
    auto scope = name_scope();
    const int64_t num = weight.shape()[0];
    for (size_t i = 0; i < index.size(); i++)
        if (index[i] < 0 || index[i] >= num) fail("Embedding: index ", index[i], " at position ", i, " is outside [0, ", num, ")");
    return gather(weight, index);
}

Conv2d::Conv2d(int64_t in_ch, int64_t out_ch, int64_t kernel, int64_t stride_, int64_t pad_, Philox& gen)
    : stride(stride_), pad(pad_) {
    double bound = 1.0 / std::sqrt(double(in_ch * kernel * kernel));
    weight = register_parameter("weight", uniform_init({out_ch, in_ch, kernel, kernel}, bound, gen));
    bias = register_parameter("bias", uniform_init({out_ch}, bound, gen));
}

Variable Conv2d::forward(const Variable& x) const {
    auto scope = name_scope();
    return conv2d(x, weight, bias, stride, pad);
}

GroupNorm::GroupNorm(int64_t groups_, int64_t channels, double eps_) : groups(groups_), eps(eps_) {
    if (groups < 1 || channels % groups) fail("GroupNorm: ", channels, " channels do not split into ", groups, " groups");
    weight = register_parameter("weight", Tensor::ones({channels}));
    bias = register_parameter("bias", Tensor::zeros({channels}));
}

Variable GroupNorm::forward(const Variable& x) const {
    auto scope = name_scope();
    return group_norm(x, weight, bias, groups, eps);
}

Variable GroupNorm::forward_silu(const Variable& x) const {
    auto scope = name_scope();
    return group_norm(x, weight, bias, groups, eps, true);
}

Dropout::Dropout(double p_) : p(p_) {
    if (!(p >= 0 && p < 1)) fail("Dropout: p must be in [0, 1), got ", p);
}

Variable Dropout::forward(const Variable& x, Philox* gen) const {
    if (!is_training() || p == 0) return x;
    if (!gen) fail("Dropout ", name(), ": training with p = ", p, " needs a Philox generator for the masks, got none");
    auto scope = name_scope();
    return dropout(x, p, *gen, true);
}

}  // namespace dl::nn
