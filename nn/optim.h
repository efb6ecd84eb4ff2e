// Optimization on flat parameter buffers: Adam and AdamW, global gradient-norm clipping, the
// learning-rate schedule (warmup, then constant or cosine), and an exponential moving average
// (EMA) of the parameters.
//
// Everything works on 1-D tensors of P values, such as Module::flat_parameters() and
// Module::flat_grads(), so each update is one vectorized OpenMP loop over the whole model.
// The state (Adam's moments and step, the EMA's shadow) is public for checkpoints; per-parameter
// views of it come from Module::views().
//
// Adam (Kingma and Ba 2015), as torch.optim.Adam / AdamW define it (PyTorch 1.13 docs), step t:
//   g = grad                 (Adam with weight_decay wd: g += wd * p, the L2 form)
//   p -= lr * wd * p         (AdamW: decoupled weight decay, Loshchilov and Hutter 2019)
//   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// with eps added after the square root of the bias-corrected v.
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace dl::nn {

struct AdamConfig {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weight_decay = 0;
    bool decoupled = false;  // false: Adam (weight decay added to the gradient); true: AdamW
};

class Adam {
public:
    Adam(int64_t n, DType dtype, AdamConfig config = {});  // state for n parameters, zeros
    // One update of params (P) from grads (P) at learning rate lr; increments t first.
    void step(Tensor& params, const Tensor& grads, double lr);

    AdamConfig config;
    Tensor m, v;    // (P) first and second moment estimates
    int64_t t = 0;  // updates taken, for the bias corrections
};

// Scales grads (P) in place so that its 2-norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when below 1.
// Returns the norm before clipping (accumulated in double).
double clip_grad_norm(Tensor& grads, double max_norm);

// The learning rate as one function of the update number `step` (1-based) in a run of `total`:
//   warmup   base * min(1, step / warmup), linear from base / warmup (PyTorch's LambdaLR with
//            min(1, (s + 1) / warmup), s from 0); warmup <= 0 means none
//   cosine   after the warmup, times (1 + cos(pi (step - warmup) / (total - warmup))) / 2: from
//            base down to 0 at step = total (Loshchilov and Hutter 2017, SGDR without restarts)
//   none     after the warmup, base
enum class LrDecay { None, Cosine };
LrDecay parse_lr_decay(const std::string& name);  // "none" | "cosine"
const char* lr_decay_name(LrDecay decay);

struct LrSchedule {
    double base = 1e-3;
    int64_t warmup = 0;
    LrDecay decay = LrDecay::None;
    double at(int64_t step, int64_t total) const;
};

// shadow = decay * shadow + (1 - decay) * params after each update; the shadow starts as a copy
// of the parameters, so after k updates with constant params p it is d^k shadow_0 + (1 - d^k) p.
class Ema {
public:
    Ema(const Tensor& params, double decay);
    void update(const Tensor& params);

    double decay;
    Tensor shadow;        // (P) the averaged parameters
    int64_t updates = 0;  // updates taken
};

// The power-function EMA of Karras et al. 2024 (EDM2, eq. 3): decay (1 - 1/t)^(gamma + 1) at
// update t (1-based). Its average weighs update s by s^gamma, so its width grows with the run:
// a fixed fraction of the steps taken, however many a time budget allows (gamma 6.94 is their
// sigma_rel 0.10, 16.97 is 0.05). The first update copies the parameters (decay 0).
double power_ema_decay(int64_t t, double gamma);

}  // namespace dl::nn
