// The samplers of samplers.h. The derivation of the DPM-Solver++ steps is in its header comment.
#include "ddpm/samplers.h"

#include <cmath>

#include "tensor/ops.h"

namespace dl::ddpm {

SamplerKind parse_sampler(const std::string& name) {
    if (name == "ancestral") return SamplerKind::Ancestral;
    if (name == "ddim") return SamplerKind::Ddim;
    if (name == "dpm++2m") return SamplerKind::DpmSolver2M;
    if (name == "dpm++2m-sde") return SamplerKind::DpmSolver2MSde;
    fail("--sampler: expected ", sampler_names(), ", got '", name, "'");
}

const char* sampler_name(SamplerKind kind) {
    switch (kind) {
        case SamplerKind::Ancestral: return "ancestral";
        case SamplerKind::Ddim: return "ddim";
        case SamplerKind::DpmSolver2M: return "dpm++2m";
        default: return "dpm++2m-sde";
    }
}

std::string sampler_names() { return "ancestral, ddim, dpm++2m or dpm++2m-sde"; }

void Sampler::validate(int64_t T) const {
    if (kind == SamplerKind::Ancestral && steps != T)
        fail("--ddim-steps: the ancestral sampler takes all T = ", T, " steps, got ", steps, " (ddim, dpm++2m and dpm++2m-sde take fewer)");
    if (steps < 1 || steps > T) fail("--ddim-steps (the sampler's steps) must be in [1, T = ", T, "], got ", steps);
    if (!(eta >= 0 && eta <= 1)) fail("--eta must be in [0, 1] (0: deterministic, 1: DDPM-like), got ", eta);
    if (eta != 0 && kind != SamplerKind::Ddim) fail("--eta is ddim's; ", sampler_name(kind), " takes none, got ", eta);
}

std::string Sampler::str() const {
    std::string out = cat(sampler_name(kind), " ", steps, " steps");
    if (kind == SamplerKind::Ddim) out += cat(", eta ", eta);
    return out;
}

std::string Sampler::cost() const { return cat(evaluations(), " model evaluations per sample"); }

Sampler sampler_from_flags(const std::string& name, int64_t steps, double eta, int64_t T) {
    Sampler sp{parse_sampler(name), steps, eta};
    if (steps == 0 || sp.kind == SamplerKind::Ancestral) sp.kind = SamplerKind::Ancestral, sp.steps = steps == 0 ? T : steps;
    sp.validate(T);
    return sp;
}

Tensor sample(const Schedule& s, const EpsModel& model, const Shape& shape, const Sampler& sampler, Philox& gen, bool clip_x0,
              const StepCallback& on_step) {
    sampler.validate(s.T);
    switch (sampler.kind) {
        case SamplerKind::Ancestral: return p_sample_loop(s, model, shape, gen, clip_x0, VarianceKind::Beta, on_step);
        case SamplerKind::Ddim: return ddim_sample(s, model, shape, sampler.steps, sampler.eta, gen, clip_x0, on_step);
        default: {
            Tensor x = randn(shape, gen);
            return dpm_solver_2m(s, model, x, ddim_timesteps(s.T, sampler.steps), sampler.kind == SamplerKind::DpmSolver2MSde, gen,
                                 clip_x0, on_step);
        }
    }
}

Tensor dpm_solver_2m(const Schedule& s, const EpsModel& model, Tensor x, const std::vector<int64_t>& ts, bool sde, Philox& gen,
                     bool clip_x0, const StepCallback& on_step) {
    auto alpha = [&](int64_t t) { return t < 0 ? 1.0 : s.sqrt_alphas_cumprod[size_t(t)]; };
    auto sigma = [&](int64_t t) { return t < 0 ? 0.0 : s.sqrt_one_minus_alphas_cumprod[size_t(t)]; };
    auto lambda = [&](int64_t t) { return std::log(alpha(t)) - std::log(sigma(t)); };
    Tensor x0_prev;      // the previous step's x_0 prediction (B, C, H, W); none before the first step
    double h_prev = 0;   // the previous step's h
    for (size_t i = 0; i < ts.size(); i++) {
        const int64_t t = ts[i], t_next = i + 1 < ts.size() ? ts[i + 1] : -1;
        if (t < 0 || t >= s.T || t_next >= t) fail("dpm_solver_2m: timesteps must decrease within [0, ", s.T, "), got ", t, " then ", t_next);
        const std::vector<int64_t> tb(size_t(x.dim(0)), t);
        Tensor x0 = predict_x0_from_eps(s, x, tb, predict_eps(model, x, tb));
        if (clip_x0) x0 = clip_unit(x0);
        if (t_next < 0) {  // sigma = 0: x = alpha D with first-order D = x0
            x = x0;
        } else {
            const double h = lambda(t_next) - lambda(t);
            Tensor D = x0;
            if (x0_prev.defined()) {  // second order: extrapolate x_0 along lambda
                const double r = h_prev / h;
                D = sub(mul_scalar(x0, 1 + 1 / (2 * r)), mul_scalar(x0_prev, 1 / (2 * r)));
            }
            const double ratio = sigma(t_next) / sigma(t);
            if (!sde) {
                x = add(mul_scalar(x, ratio), mul_scalar(D, -alpha(t_next) * std::expm1(-h)));
            } else {
                const double keep = -std::expm1(-2 * h);  // 1 - e^{-2h}
                x = add(add(mul_scalar(x, ratio * std::exp(-h)), mul_scalar(D, alpha(t_next) * keep)),
                        mul_scalar(randn(x.shape(), gen, x.dtype()), sigma(t_next) * std::sqrt(keep)));
            }
            h_prev = h;
        }
        x0_prev = x0;
        if (on_step) on_step(t, x);
    }
    return x;
}

}  // namespace dl::ddpm
