#include "ddpm/diffusion.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "tensor/ops.h"

namespace dl::ddpm {

ScheduleKind parse_schedule(const std::string& name) {
    if (name == "linear") return ScheduleKind::Linear;
    if (name == "cosine") return ScheduleKind::Cosine;
    fail("schedule: expected 'linear' or 'cosine', got '", name, "'");
}

const char* schedule_name(ScheduleKind kind) { return kind == ScheduleKind::Linear ? "linear" : "cosine"; }

Schedule make_schedule(ScheduleKind kind, int64_t T, double beta_start, double beta_end) {
    if (T < 2 || T > kMaxT) fail("make_schedule: T must be in [2, ", kMaxT, "], got ", T);
    Schedule s;
    s.kind = kind;
    s.T = T;
    s.betas.resize(size_t(T));
    if (kind == ScheduleKind::Linear) {
        for (int64_t t = 0; t < T; t++) s.betas[size_t(t)] = beta_start + (beta_end - beta_start) * double(t) / double(T - 1);
    } else {
        const double offset = 0.008, half_pi = 1.5707963267948966;
        auto f = [&](double t) { double c = std::cos((t / double(T) + offset) / (1 + offset) * half_pi); return c * c; };
        for (int64_t t = 0; t < T; t++) s.betas[size_t(t)] = std::min(1 - f(double(t + 1)) / f(double(t)), 0.999);
    }
    double abar = 1;
    for (int64_t t = 0; t < T; t++) {
        double beta = s.betas[size_t(t)], alpha = 1 - beta, abar_prev = abar;
        abar *= alpha;
        s.alphas.push_back(alpha);
        s.alphas_cumprod.push_back(abar);
        s.alphas_cumprod_prev.push_back(abar_prev);
        s.sqrt_alphas_cumprod.push_back(std::sqrt(abar));
        s.sqrt_one_minus_alphas_cumprod.push_back(std::sqrt(1 - abar));
        s.sqrt_recip_alphas_cumprod.push_back(std::sqrt(1 / abar));
        s.sqrt_recipm1_alphas_cumprod.push_back(std::sqrt(1 / abar - 1));
        s.posterior_variance.push_back(beta * (1 - abar_prev) / (1 - abar));
        s.posterior_mean_coef1.push_back(beta * std::sqrt(abar_prev) / (1 - abar));
        s.posterior_mean_coef2.push_back((1 - abar_prev) * std::sqrt(alpha) / (1 - abar));
    }
    // beta tilde_0 = 0, so its log is clipped to beta tilde_1's, as in the official code
    for (int64_t t = 0; t < T; t++) s.posterior_log_variance_clipped.push_back(std::log(s.posterior_variance[size_t(t == 0 ? 1 : t)]));
    s.fixedlarge_variance = s.betas;
    s.fixedlarge_variance[0] = s.posterior_variance[1];
    for (double v : s.fixedlarge_variance) s.fixedlarge_log_variance.push_back(std::log(v));
    return s;
}

Tensor extract(const std::vector<double>& a, const std::vector<int64_t>& t, DType dtype, int ndim) {
    Shape shape(static_cast<size_t>(ndim), 1);
    shape[0] = int64_t(t.size());
    Tensor out(shape, dtype);
    for (size_t i = 0; i < t.size(); i++) {
        if (t[i] < 0 || t[i] >= int64_t(a.size())) fail("extract: timestep ", t[i], " out of range [0, ", a.size(), ")");
        out.set_flat(int64_t(i), a[size_t(t[i])]);
    }
    return out;
}

static void check_batch(const Tensor& x, const std::vector<int64_t>& t, const char* op) {
    if (x.ndim() < 1 || x.dim(0) != int64_t(t.size())) fail(op, ": ", t.size(), " timesteps for a batch of shape ", shape_str(x.shape()));
}

Tensor q_sample(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps) {
    check_batch(x0, t, "q_sample");
    check_same_shape(x0, eps, "q_sample");
    return add(mul(extract(s.sqrt_alphas_cumprod, t, x0.dtype(), x0.ndim()), x0),
               mul(extract(s.sqrt_one_minus_alphas_cumprod, t, x0.dtype(), x0.ndim()), eps));
}

Gaussian q_posterior(const Schedule& s, const Tensor& x0, const Tensor& xt, const std::vector<int64_t>& t) {
    check_batch(x0, t, "q_posterior");
    check_same_shape(x0, xt, "q_posterior");
    DType d = x0.dtype();
    int n = x0.ndim();
    return {add(mul(extract(s.posterior_mean_coef1, t, d, n), x0), mul(extract(s.posterior_mean_coef2, t, d, n), xt)),
            extract(s.posterior_variance, t, d, n), extract(s.posterior_log_variance_clipped, t, d, n)};
}

Tensor predict_x0_from_eps(const Schedule& s, const Tensor& xt, const std::vector<int64_t>& t, const Tensor& eps) {
    check_batch(xt, t, "predict_x0_from_eps");
    check_same_shape(xt, eps, "predict_x0_from_eps");
    return sub(mul(extract(s.sqrt_recip_alphas_cumprod, t, xt.dtype(), xt.ndim()), xt),
               mul(extract(s.sqrt_recipm1_alphas_cumprod, t, xt.dtype(), xt.ndim()), eps));
}

Tensor clip_unit(const Tensor& x) {
    Tensor y = x.clone();
    dispatch(y.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* p = y.data<T>();
        for (int64_t i = 0; i < y.numel(); i++) p[i] = std::clamp(p[i], T(-1), T(1));
    });
    return y;
}

Tensor predict_eps(const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t) {
    NoGradGuard no_grad;
    return model(Variable(xt), t, nullptr).value();
}

PMeanVariance p_mean_variance(const Schedule& s, const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t,
                              bool clip_x0, VarianceKind var) {
    Tensor eps = predict_eps(model, xt, t);
    Tensor x0 = predict_x0_from_eps(s, xt, t, eps);
    if (clip_x0) x0 = clip_unit(x0);
    Gaussian post = q_posterior(s, x0, xt, t);
    if (var == VarianceKind::Beta) {
        post.variance = extract(s.fixedlarge_variance, t, xt.dtype(), xt.ndim());
        post.log_variance = extract(s.fixedlarge_log_variance, t, xt.dtype(), xt.ndim());
    }
    return {post.mean, post.variance, post.log_variance, x0};
}

Tensor sample_gaussian(const Gaussian& g, const std::vector<int64_t>& t, Philox& gen) {
    Tensor z = randn(g.mean.shape(), gen, g.mean.dtype());
    Tensor sigma = sqrt(g.variance);  // (B, 1, 1, 1)
    for (size_t i = 0; i < t.size(); i++)
        if (t[i] == 0) sigma.set_flat(int64_t(i), 0);  // no noise at the last step
    return add(g.mean, mul(sigma, z));
}

Tensor p_sample(const Schedule& s, const EpsModel& model, const Tensor& xt, const std::vector<int64_t>& t, Philox& gen,
                bool clip_x0, VarianceKind var) {
    PMeanVariance p = p_mean_variance(s, model, xt, t, clip_x0, var);
    return sample_gaussian({p.mean, p.variance, p.log_variance}, t, gen);
}

Tensor p_sample_loop_from(const Schedule& s, const EpsModel& model, Tensor x, int64_t t_start, Philox& gen, bool clip_x0,
                          VarianceKind var, const StepCallback& on_step) {
    if (t_start < 0 || t_start >= s.T) fail("p_sample_loop: start timestep ", t_start, " out of range [0, ", s.T, ")");
    for (int64_t t = t_start; t >= 0; t--) {
        x = p_sample(s, model, x, std::vector<int64_t>(size_t(x.dim(0)), t), gen, clip_x0, var);
        if (on_step) on_step(t, x);
    }
    return x;
}

Tensor p_sample_loop(const Schedule& s, const EpsModel& model, const Shape& shape, Philox& gen, bool clip_x0,
                     VarianceKind var, const StepCallback& on_step) {
    return p_sample_loop_from(s, model, randn(shape, gen), s.T - 1, gen, clip_x0, var, on_step);
}

Tensor ddim_step(const Schedule& s, const Tensor& xt, const Tensor& eps, int64_t t, int64_t t_prev, double eta, Philox& gen,
                 bool clip_x0) {
    if (t < 0 || t >= s.T || t_prev < -1 || t_prev >= t) fail("ddim_step: expected 0 <= t < ", s.T, " and -1 <= t_prev < t, got t ", t, ", t_prev ", t_prev);
    if (!(eta >= 0 && eta <= 1)) fail("ddim_step: eta must be in [0, 1] (0: deterministic, 1: DDPM-like), got ", eta);
    std::vector<int64_t> ts(size_t(xt.dim(0)), t);
    Tensor x0 = predict_x0_from_eps(s, xt, ts, eps);
    if (clip_x0) x0 = clip_unit(x0);
    // recompute eps from the (possibly clipped) x0 so the step stays on the same trajectory
    Tensor eps_used = clip_x0 ? div(sub(xt, mul_scalar(x0, s.sqrt_alphas_cumprod[size_t(t)])), Tensor::scalar(s.sqrt_one_minus_alphas_cumprod[size_t(t)], xt.dtype()))
                              : eps;
    double abar = s.alphas_cumprod[size_t(t)];
    double abar_prev = t_prev >= 0 ? s.alphas_cumprod[size_t(t_prev)] : 1.0;
    double sigma = eta * std::sqrt((1 - abar_prev) / (1 - abar)) * std::sqrt(1 - abar / abar_prev);
    double dir = std::sqrt(std::max(0.0, 1 - abar_prev - sigma * sigma));
    Tensor x = add(mul_scalar(x0, std::sqrt(abar_prev)), mul_scalar(eps_used, dir));
    if (sigma > 0 && t_prev >= 0) x = add(x, mul_scalar(randn(xt.shape(), gen, xt.dtype()), sigma));
    return x;
}

std::vector<int64_t> ddim_timesteps(int64_t T, int64_t k) {
    if (k < 1 || k > T) fail("ddim: the number of steps must be in [1, ", T, "], got ", k);
    std::vector<int64_t> ts;
    for (int64_t i = 0; i < k; i++) ts.push_back(k == 1 ? T - 1 : int64_t(std::llround(double(T - 1) * double(k - 1 - i) / double(k - 1))));
    return ts;
}

Tensor ddim_sample(const Schedule& s, const EpsModel& model, const Shape& shape, int64_t k, double eta, Philox& gen,
                   bool clip_x0, const StepCallback& on_step) {
    std::vector<int64_t> ts = ddim_timesteps(s.T, k);
    Tensor x = randn(shape, gen);
    for (size_t i = 0; i < ts.size(); i++) {
        int64_t t = ts[i], t_prev = i + 1 < ts.size() ? ts[i + 1] : -1;
        Tensor eps = predict_eps(model, x, std::vector<int64_t>(size_t(shape[0]), t));
        x = ddim_step(s, x, eps, t, t_prev, eta, gen, clip_x0);
        if (on_step) on_step(t, x);
    }
    return x;
}

LossWeight parse_loss_weight(const std::string& name) {
    if (name == "uniform") return LossWeight::Uniform;
    if (name == "min-snr") return LossWeight::MinSnr;
    fail("loss weighting: expected 'uniform' or 'min-snr', got '", name, "'");
}

const char* loss_weight_name(LossWeight w) { return w == LossWeight::Uniform ? "uniform" : "min-snr"; }

std::vector<double> loss_weights(const Schedule& s, LossWeight w, double gamma) {
    if (w == LossWeight::MinSnr && !(gamma > 0)) fail("loss_weights: min-snr needs gamma > 0, got ", gamma);
    std::vector<double> out(size_t(s.T), 1.0);
    for (size_t t = 0; t < out.size() && w == LossWeight::MinSnr; t++) {
        double snr = s.alphas_cumprod[t] / (1 - s.alphas_cumprod[t]);
        out[t] = std::min(snr, gamma) / snr;
    }
    return out;
}

Variable training_loss(const Schedule& s, const EpsModel& model, const Tensor& x0, const std::vector<int64_t>& t,
                       const Tensor& eps, Philox* dropout_gen, const std::vector<double>& weights) {
    Tensor xt = q_sample(s, x0, t, eps);
    Variable eps_hat = model(Variable(xt, false, "input.xt"), t, dropout_gen);
    Variable target(eps, false, "input.eps");
    if (weights.empty()) return mse_loss(eps_hat, target).set_name("loss");
    if (int64_t(weights.size()) != s.T) fail("training_loss: ", weights.size(), " loss weights for T = ", s.T);
    Variable w(extract(weights, t, eps.dtype(), eps.ndim()), false, "input.loss_weight");  // (B, 1, 1, 1)
    return mean(mul(square(sub(eps_hat, target)), w)).set_name("loss");
}

std::vector<double> per_sample_mse(const Tensor& pred, const Tensor& target) {
    check_same_shape(pred, target, "per_sample_mse");
    int64_t B = pred.dim(0), n = pred.numel() / std::max<int64_t>(B, 1);
    std::vector<double> out(static_cast<size_t>(B), 0.0);
    for (int64_t b = 0; b < B; b++) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = pred.flat(b * n + i) - target.flat(b * n + i);
            acc += d * d;
        }
        out[size_t(b)] = acc / double(n);
    }
    return out;
}

}  // namespace dl::ddpm
