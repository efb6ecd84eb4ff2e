// The DDPM noise-prediction U-Net (Ho et al. 2020), as its PyTorch twin builds it: the same blocks,
// the same math, and PyTorch's parameter names in the same order, so that a checkpoint written
// here loads into the PyTorch module with load_state_dict (tests/check_checkpoint.py checks it).
// B batch, C channels, H, W, HW = H*W, R resolution, tdim = 4 * ch.
//
//   temb = fc2(silu(fc1(sinusoidal(t))))                                       (B, tdim)
//          + label_emb[y] when class-conditional (num_classes > 0; y = num_classes: no class)
//   h = conv_in(x); keep h
//   down level i (ch * ch_mult[i] channels): num_res_blocks x [ResBlock, Attention if R in
//       attn_res], keeping each output; then (except the last level) a stride-2 3x3 conv, kept
//   mid: ResBlock, Attention, ResBlock
//   up level i, from the last back to 0: num_res_blocks + 1 x [ResBlock on concat(h, the last
//       kept), Attention if R in attn_res]; then (except level 0) nearest 2x upsampling + 3x3 conv
//   out = conv_out(silu(norm_out(h)))                                          (B, in_ch, R, R)
//
// UNetConfig's defaults are build/train's measured recipe (README, "The 30-minute recipe"): ch 16,
// one ResBlock per level, no dropout. UNetConfig::reference() is the reference's own U-Net (ch 32,
// two ResBlocks per level, dropout 0.1), with 1,623,169 parameters.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/parse.h"
#include "nn/layers.h"

namespace dl::nn {

struct UNetConfig {
    int64_t in_ch = 1;
    int64_t ch = 16;                   // build/train --ch
    std::vector<int64_t> ch_mult{1, 2, 2};
    int64_t num_res_blocks = 1;        // --res-blocks
    std::vector<int64_t> attn_res{7};  // resolutions that get attention blocks
    int64_t groups = 8;
    double dropout = 0;                // --dropout
    int64_t resolution = 28;
    // > 0: class-conditional (Ho & Salimans 2022): label_emb, num_classes + 1 rows of tdim (the
    // last row the null label, "no class"), is added to the time embedding. 0: unconditional, and
    // str() leaves the key out, so the unconditional model's text is what it always was.
    int64_t num_classes = 0;           // --classes

    // The ranges of the fields build/train sets (tensor/parse.h), which validate() checks and the
    // flags state; validate() adds what one range cannot say (ch even, ch * ch_mult <= 1024).
    static constexpr Range kCh{4, 1024}, kResBlocks{1, 4}, kClasses{0, 1000};
    static constexpr RealRange kDropout{0, 0.99};

    // The U-Net of Ho et al. as its PyTorch twin builds it: ch 32, two ResBlocks per
    // level, dropout 0.1.
    static UNetConfig reference();
    // Throws a dl::Error naming the first field out of range (and its build/train flag, where it
    // has one). The bounds keep a config read from a file from asking for an allocation no
    // checkpoint could justify. Whether the groups divide the channels is GroupNorm's to say.
    void validate() const;

    // "in_ch=1 ch=32 ch_mult=1,2,2 num_res_blocks=2 attn_res=7 groups=8 dropout=0.1 resolution=28",
    // and back (for checkpoint metadata). parse() starts from reference(), the model every key
    // once defaulted to; unknown keys throw.
    std::string str() const;
    static UNetConfig parse(const std::string& s);
    bool operator==(const UNetConfig&) const = default;
};

// The sinusoidal embedding of integer timesteps, (B) -> (B, dim), computed in float32 as the
// reference does: freq_i = exp(-ln(10000) i / (half - 1)), i < half = dim / 2,
// emb = [sin(t freq_0) .. sin(t freq_{half-1}), cos(t freq_0) .. cos(t freq_{half-1})].
// (The tensor2tensor original divides by half; Ho et al.'s code divides by half - 1.)
Tensor timestep_embedding(const std::vector<int64_t>& t, int64_t dim);

// GN -> SiLU -> conv3x3 -> + temb_proj(SiLU(temb)) -> GN -> SiLU -> dropout -> conv3x3, plus the
// input (through a 1x1 conv when the channel count changes).
class ResBlock : public Module {
public:
    ResBlock(int64_t cin, int64_t cout, int64_t tdim, int64_t groups, double dropout, Philox& gen);
    // x (B, cin, H, W), temb (B, tdim) -> (B, cout, H, W)
    Variable forward(const Variable& x, const Variable& temb, Philox* dropout_gen) const;

    GroupNorm norm1;
    Conv2d conv1;
    Linear temb_proj;
    GroupNorm norm2;
    Dropout dropout;
    Conv2d conv2;
    std::unique_ptr<Conv2d> skip;  // only when cin != cout
};

// Single-head self-attention over the HW positions, with a residual connection:
//   q, k, v = qkv(norm(x)) viewed as (B, 3, C, HW)          each (B, C, HW)
//   w = softmax(q^T k / sqrt(C)) over the last dim           (B, HW, HW), w[b,i,j]
//   out = x + proj(v w^T viewed as (B, C, H, W))             out[b,c,i] = sum_j w[b,i,j] v[b,c,j]
class Attention : public Module {
public:
    Attention(int64_t channels, int64_t groups, Philox& gen);
    Variable forward(const Variable& x) const;  // (B, C, H, W) -> same

    GroupNorm norm;
    Conv2d qkv;   // C -> 3C, 1x1
    Conv2d proj;  // C -> C, 1x1
};

// One resolution of the U-Net: its ResBlocks, their attention blocks, and a resampling conv.
struct Level : Module {
    ModuleList<ResBlock> res;
    ModuleList<Attention> attn;             // empty, or one per ResBlock
    std::unique_ptr<Conv2d> downsample;     // down levels but the last: 3x3, stride 2
    std::unique_ptr<Conv2d> upsample;       // up levels but level 0: 3x3 after nearest 2x
    Level();
    void set_resample(std::unique_ptr<Conv2d> conv, bool down);
};

class UNet : public Module {
public:
    // Builds the model (config.validate() first), draws its initial parameters from
    // Philox(seed), and packs them.
    explicit UNet(const UNetConfig& config = {}, uint64_t seed = 0);
    // x (B, in_ch, R, R) noisy images, t (B) integer timesteps -> predicted noise (B, in_ch, R, R).
    // In training mode with dropout > 0 the masks come from dropout_gen, which must be given.
    // labels (B) in [0, num_classes] (num_classes: the null label) for a class-conditional
    // model, which needs them; an unconditional one refuses them.
    // Activations are named by module path and op, unique within the call.
    Variable forward(const Variable& x, const std::vector<int64_t>& t, Philox* dropout_gen = nullptr,
                     const std::vector<int64_t>* labels = nullptr) const;
    int64_t null_label() const { return config_.num_classes; }
    const UNetConfig& config() const { return config_; }
    std::string config_string() const override { return config_.str(); }

    struct TimeEmbed : Module {
        Linear fc1, fc2;
        TimeEmbed(int64_t ch, int64_t tdim, Philox& gen);
    };
    struct Mid : Module {
        ResBlock res1;
        Attention attn;
        ResBlock res2;
        Mid(int64_t c, int64_t tdim, int64_t groups, double dropout, Philox& gen);
    };

private:
    UNetConfig config_;
    std::unique_ptr<TimeEmbed> temb_;
    std::unique_ptr<Embedding> label_emb_;  // class-conditional only
    std::unique_ptr<Conv2d> conv_in_;
    ModuleList<Level> down_, up_;  // up_[i] is resolution level i, as down_[i]
    std::unique_ptr<Mid> mid_;
    std::unique_ptr<GroupNorm> norm_out_;
    std::unique_ptr<Conv2d> conv_out_;
};

}  // namespace dl::nn
