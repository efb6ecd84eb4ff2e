// The layers with parameters or state, as PyTorch's nn.Linear, nn.Conv2d, nn.GroupNorm and
// nn.Dropout, over the differentiable ops of autograd/ops.h. SiLU and nearest 2x upsampling have
// neither, and the reference calls them as functions (F.silu, F.interpolate), so the U-Net does
// too: dl::silu and dl::upsample_nearest2d. N rows, B batch, C channels, H, W.
//
// Initialization is PyTorch's default: a Linear or Conv2d weight is kaiming_uniform_(a = sqrt(5)),
// i.e. uniform in +-gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), which is
// +-1/sqrt(fan_in); the bias is uniform in the same +-1/sqrt(fan_in) (fan_in = in features, or
// Cin * KH * KW). GroupNorm starts as the identity: weight 1, bias 0. The numbers come from the
// seeded Philox generator the caller passes, in construction order.
#pragma once
#include "nn/module.h"
#include "tensor/rng.h"

namespace dl::nn {

// U(-bound, bound) of the given shape, float32, drawn from gen.
Tensor uniform_init(Shape shape, double bound, Philox& gen);

class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, Philox& gen);
    Variable forward(const Variable& x) const;  // (N, in) -> (N, out)
    Variable weight;                            // (out, in)
    Variable bias;                              // (out)
};

// A table of num vectors of dim values, looked up by index, as PyTorch's nn.Embedding, whose
// default init N(0, 1) it keeps. Its gradient is the output's gradient added into the rows that
// were looked up (autograd's gather).
class Embedding : public Module {
public:
    Embedding(int64_t num, int64_t dim, Philox& gen);
    Variable forward(const std::vector<int64_t>& index) const;  // (N) indices in [0, num) -> (N, dim)
    Variable weight;                                             // (num, dim)
};

class Conv2d : public Module {
public:
    Conv2d(int64_t in_ch, int64_t out_ch, int64_t kernel, int64_t stride, int64_t pad, Philox& gen);
    Variable forward(const Variable& x) const;  // (B, in_ch, H, W) -> (B, out_ch, Ho, Wo)
    Variable weight;                            // (out_ch, in_ch, kernel, kernel)
    Variable bias;                              // (out_ch)
    int64_t stride, pad;
};

class GroupNorm : public Module {
public:
    GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5);
    Variable forward(const Variable& x) const;       // (B, C, ...) -> same
    Variable forward_silu(const Variable& x) const;  // silu(forward(x)) as one op (autograd's group_norm_silu)
    Variable weight;                                 // (C), gamma
    Variable bias;                                   // (C), beta
    int64_t groups;
    double eps;
};

// Inverted dropout; the masks come from a generator the caller owns (the trainer saves its
// state in checkpoints). In eval mode, or with p = 0, it is the identity and gen may be null.
class Dropout : public Module {
public:
    explicit Dropout(double p);
    Variable forward(const Variable& x, Philox* gen) const;
    double p;
};

}  // namespace dl::nn
