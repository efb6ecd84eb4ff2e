// The samplers, one name each, and what each costs: model evaluations per sample.
//
//   ancestral    Algorithm 2 of Ho et al. 2020: x_T ~ N(0, I), then p_sample for every t = T-1..0
//                with the reverse variance beta_t. T evaluations; --steps must be T.
//   ddim         Song et al. 2021, eq. 12, over `steps` evenly spaced timesteps; eta 0 is the
//                deterministic sampler, eta 1 the ancestral step on the respaced schedule.
//   dpm++2m      DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2): the probability-
//                flow ODE in the data prediction x_0, second order from the previous step's x_0
//                (a multistep method: one evaluation per step); its first and last steps first order.
//   dpm++2m-sde  the SDE variant of the same (Lu et al. 2022, sec. 5; the "midpoint" form): each
//                step forgets e^{-h} of x and draws fresh noise for the rest.
//
// With lambda_t = log(alpha_t / sigma_t), alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and
// h = lambda_{t'} - lambda_t for a step from t to t' < t, given D, an estimate of x_0:
//   ODE  x_{t'} = (sigma_{t'} / sigma_t) x_t - alpha_{t'} (e^{-h} - 1) D
//   SDE  x_{t'} = (sigma_{t'} / sigma_t) e^{-h} x_t + alpha_{t'} (1 - e^{-2h}) D + sigma_{t'} sqrt(1 - e^{-2h}) z
// First order takes D = x0_t (the ODE step is then DDIM's with eta 0); second order extrapolates
// from the previous step's x0 with r = h_prev / h: D = (1 + 1/(2r)) x0_t - (1/(2r)) x0_prev.
// The last step goes to t' = -1 (abar = 1, sigma = 0, h infinite), where both give x = D = x0_t.
#pragma once
#include <string>

#include "ddpm/diffusion.h"
#include "tensor/parse.h"

namespace dl::ddpm {

enum class SamplerKind { Ancestral, Ddim, DpmSolver2M, DpmSolver2MSde };
SamplerKind parse_sampler(const std::string& name);  // "ancestral" | "ddim" | "dpm++2m" | "dpm++2m-sde"
const char* sampler_name(SamplerKind kind);
// The names, for --help: "ancestral, ddim, dpm++2m or dpm++2m-sde".
std::string sampler_names();

// The defaults of every program's --sampler, --ddim-steps and --eta (sample, eval, figures; train's
// grid; train's evaluations and eval's sweeps take fewer steps, kDefaultEvalSteps). Chosen by the
// ruler on a 30-minute make train (ddpm/README.md, "Which sampler"): DPM-Solver++(2M) SDE in 50
// steps scored FID 9.1 against the real digits' 10.5, DDIM 50 with eta 1 11.1, with eta 0 13.8.
inline constexpr const char* kDefaultSampler = "dpm++2m-sde";
inline constexpr int64_t kDefaultSamplerSteps = 50;
inline constexpr int64_t kDefaultEvalSteps = 20;
inline constexpr double kDefaultEta = 0;

struct Sampler {
    SamplerKind kind = SamplerKind::DpmSolver2MSde;  // kDefaultSampler's
    int64_t steps = kDefaultSamplerSteps;  // model evaluations per sample (ancestral: all T)
    double eta = kDefaultEta;              // ddim's noise, in [0, 1]; the others take none
    // Throws naming the field when steps is outside [1, T] (ancestral: not T) or eta outside [0, 1].
    void validate(int64_t T) const;
    std::string str() const;  // "ddim 50 steps, eta 0", "dpm++2m 25 steps"
    // Network evaluations per sample: one per step (a guided model's evaluates the conditional and
    // the unconditional half in one forward of twice the images).
    int64_t evaluations() const { return steps; }
    std::string cost() const;  // "50 model evaluations per sample"
};

// The ranges of the flags below (tensor/parse.h): a step count (0: ancestral over all T), eta.
constexpr Range kSamplerSteps{0, kMaxT};
constexpr RealRange kEta{0, 1};
// The sampler a program's flags name: --sampler NAME, its step count (--ddim-steps K; 0 asks for
// the ancestral sampler over all T, as does the name ancestral) and --eta (ddim's). Checked.
Sampler sampler_from_flags(const std::string& name, int64_t steps, double eta, int64_t T);

// Draws shape from x_T ~ N(0, I) with the sampler; clip_x0 clamps each predicted x_0 to [-1, 1].
// on_step, when given, sees each timestep and the x it led to.
Tensor sample(const Schedule& s, const EpsModel& model, const Shape& shape, const Sampler& sampler, Philox& gen,
              bool clip_x0 = true, const StepCallback& on_step = nullptr);

// DPM-Solver++(2M), or with sde its SDE variant, over the timesteps ts (decreasing, ending at 0),
// from the given x_T; ddim_timesteps(T, k) gives the usual ones.
Tensor dpm_solver_2m(const Schedule& s, const EpsModel& model, Tensor x, const std::vector<int64_t>& ts, bool sde, Philox& gen,
                     bool clip_x0, const StepCallback& on_step = nullptr);

}  // namespace dl::ddpm
