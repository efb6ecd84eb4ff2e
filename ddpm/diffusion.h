// Denoising diffusion probabilistic models (Ho, Jain and Abbeel 2020), with DDIM sampling
// (Song, Meng and Ermon 2021). Names follow the paper and its official implementation
// (hojonathanho/diffusion, diffusion_utils_2.py).
//
// B batch, T diffusion steps, images (B, C, H, W) in [-1, 1]. Timesteps are 0-based: t = 0 is the
// paper's t = 1, the first noising step. All schedule constants are computed in double, as the
// official code does "for accuracy", and converted to the images' dtype when used.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace dl::ddpm {

enum class ScheduleKind { Linear, Cosine };
ScheduleKind parse_schedule(const std::string& name);  // "linear" | "cosine"
const char* schedule_name(ScheduleKind kind);

// The variance of the reverse step p(x_{t-1} | x_t): beta_t ("fixedlarge" in the official code)
// or beta tilde_t, the variance of the true posterior ("fixedsmall"). Ho et al. sec. 3.2 report
// both give similar samples.
enum class VarianceKind { Beta, BetaTilde };

struct Schedule {
    ScheduleKind kind;
    int64_t T;
    // each (T,)
    std::vector<double> betas, alphas;
    std::vector<double> alphas_cumprod;       // abar_t = prod_{s<=t} alpha_s
    std::vector<double> alphas_cumprod_prev;  // abar_{t-1}, with abar_{-1} = 1
    std::vector<double> sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod;
    std::vector<double> sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod;  // sqrt(1/abar), sqrt(1/abar - 1)
    std::vector<double> posterior_variance;              // beta tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
    std::vector<double> posterior_log_variance_clipped;  // log beta tilde, with t = 0 set to t = 1 (it is 0 there)
    std::vector<double> posterior_mean_coef1;            // beta_t sqrt(abar_{t-1}) / (1 - abar_t)       (times x0)
    std::vector<double> posterior_mean_coef2;            // (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)  (times xt)
    // The reverse step's variance "fixedlarge": beta_t, except beta tilde_1 at t = 0 for a better
    // log-likelihood (the official code's np.append(posterior_variance[1], betas[1:])), and its log.
    std::vector<double> fixedlarge_variance, fixedlarge_log_variance;
};

// linear: beta from beta_start to beta_end (Ho et al.: 1e-4 to 0.02, T = 1000).
// cosine: abar_t = f(t) / f(0), f(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), s = 0.008, betas clipped
// at 0.999 (Nichol and Dhariwal 2021, eq. 17).
// The largest T a config, flag or checkpoint may ask for: the schedule holds a dozen doubles per step.
constexpr int64_t kMaxT = 1'000'000;
Schedule make_schedule(ScheduleKind kind, int64_t T = 1000, double beta_start = 1e-4, double beta_end = 0.02);

// a[t] for each sample, shaped (B, 1, 1, 1) to broadcast over images ("_extract" in the official code).
Tensor extract(const std::vector<double>& a, const std::vector<int64_t>& t, DType dtype, int ndim = 4);

// ---- the forward process q ----------------------------------------------------------------
// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I)          (Ho et al. eq. 4)
Tensor q_sample(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps);

struct Gaussian {
    Tensor mean;          // (B, C, H, W)
    Tensor variance;      // (B, 1, 1, 1)
    Tensor log_variance;  // (B, 1, 1, 1)
};
// q(x_{t-1} | x_t, x_0) = N(coef1 x0 + coef2 x_t, beta tilde_t)      (Ho et al. eqs. 6, 7)
Gaussian q_posterior(const Schedule& s, const Tensor& x0, const Tensor& xt, const std::vector<int64_t>& t);

// x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), inverting q_sample
Tensor predict_x0_from_eps(const Schedule& s, const Tensor& xt, const std::vector<int64_t>& t, const Tensor& eps);

// ---- the network ---------------------------------------------------------------------------
// The noise-prediction network as a function: eps_theta(x_t, t), with its dropout masks drawn
// from dropout_gen (null: it must need none, in eval mode or with dropout 0). Training records
// the graph through it; the samplers call it under a NoGradGuard with a null generator.
using EpsModel = std::function<Variable(const Variable& xt, const std::vector<int64_t>& t, Philox* dropout_gen)>;

// eps_theta(x_t, t) as a Tensor, without a graph (under a NoGradGuard): what the samplers call.
Tensor predict_eps(const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t);
// x clamped to [-1, 1], the data's range: the samplers' clip of a predicted x_0.
Tensor clip_unit(const Tensor& x);

// ---- the reverse process p ----------------------------------------------------------------

struct PMeanVariance {
    Tensor mean, variance, log_variance;  // as Gaussian
    Tensor pred_x0;                       // (B, C, H, W)
};
// The model's reverse step: x0 predicted from eps_theta (optionally clipped to [-1, 1]), then the
// posterior mean given that x0; the variance is fixed by `var`.
PMeanVariance p_mean_variance(const Schedule& s, const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t,
                              bool clip_x0, VarianceKind var);

// One draw from a Gaussian over images: mean + sqrt(variance) * z, z ~ N(0, I), except where
// t == 0, which returns the mean (Algorithm 2's z = 0 at the last step).
Tensor sample_gaussian(const Gaussian& g, const std::vector<int64_t>& t, Philox& gen);

// Algorithm 2, one step: x_{t-1} ~ p(x_{t-1} | x_t).
Tensor p_sample(const Schedule& s, const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t, Philox& gen,
                bool clip_x0, VarianceKind var);

// Called after each reverse step with the timestep just taken and the new x (for figures, progress).
using StepCallback = std::function<void(int64_t t, const Tensor& x)>;
// Called as long work advances: `done` of `total` units (batches, forward passes, steps).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// Algorithm 2: x_T ~ N(0, I), then p_sample for t = T-1 .. 0. Returns x_0.
Tensor p_sample_loop(const Schedule& s, const EpsModel& model, const Shape& shape, Philox& gen, bool clip_x0 = true,
                     VarianceKind var = VarianceKind::Beta, const StepCallback& on_step = nullptr);
// The same loop started from a given x_t at timestep t_start (for the one-to-many figure).
Tensor p_sample_loop_from(const Schedule& s, const EpsModel& model, Tensor x, int64_t t_start, Philox& gen, bool clip_x0,
                          VarianceKind var, const StepCallback& on_step = nullptr);

// DDIM (Song et al. 2021, eq. 12), one step from t to t_prev < t (t_prev = -1 means abar = 1):
//   x0 = predict_x0_from_eps,  sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
//   x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z
// With eta = 1 and t_prev = t - 1, sigma^2 is beta tilde_t: the ancestral step with BetaTilde.
Tensor ddim_step(const Schedule& s, const Tensor& xt, const Tensor& eps, int64_t t, int64_t t_prev, double eta, Philox& gen,
                 bool clip_x0);
// The timesteps DDIM visits with k steps: k values evenly spaced from T-1 down to 0.
std::vector<int64_t> ddim_timesteps(int64_t T, int64_t k);
Tensor ddim_sample(const Schedule& s, const EpsModel& model, const Shape& shape, int64_t k, double eta, Philox& gen,
                   bool clip_x0 = true, const StepCallback& on_step = nullptr);

// ---- training -----------------------------------------------------------------------------
// How the loss weighs the timesteps:
//   uniform  Algorithm 1 as written: every t counts the same
//   min-snr  Min-SNR-gamma (Hang et al. 2023, arXiv 2303.09556), for eps-prediction the weight
//            min(SNR_t, gamma) / SNR_t with SNR_t = abar_t / (1 - abar_t): 1 for the noisy
//            timesteps (SNR <= gamma), less for the nearly clean ones, whose easy eps targets
//            would otherwise pull the shared weights their way. The paper's gamma is 5.
enum class LossWeight { Uniform, MinSnr };
LossWeight parse_loss_weight(const std::string& name);  // "uniform" | "min-snr"
const char* loss_weight_name(LossWeight w);
// The per-timestep weights (T,) of the loss; uniform: all 1.
std::vector<double> loss_weights(const Schedule& s, LossWeight w, double gamma = 5);

// Algorithm 1: || eps - eps_theta(q_sample(x0, t, eps), t) ||^2, the mean over all elements,
// with the graph recorded; dropout masks from dropout_gen. With weights (T,) each image's squared
// errors are multiplied by weights[t] before the mean; empty: Algorithm 1 unweighted.
Variable training_loss(const Schedule& s, const EpsModel& model, const Tensor& x0, const std::vector<int64_t>& t,
                       const Tensor& eps, Philox* dropout_gen = nullptr, const std::vector<double>& weights = {});
// The mean squared error of each sample separately (B,), to see the loss per timestep.
std::vector<double> per_sample_mse(const Tensor& pred, const Tensor& target);

}  // namespace dl::ddpm
