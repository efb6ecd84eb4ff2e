// The samplers against a data distribution whose optimal eps is known in closed form: every pixel
// x_0 ~ N(mu, s^2) independently. Then x_t = a x_0 + sigma eps (a = sqrt(abar_t), sigma =
// sqrt(1 - abar_t)) is N(a mu, a^2 s^2 + sigma^2), and E[eps | x_t] = sigma (x_t - a mu) / (a^2 s^2 + sigma^2)
// is the eps a perfect network predicts. The probability-flow ODE carries the standardized
// z = (x_t - a mu) / sqrt(a^2 s^2 + sigma^2) unchanged, so a deterministic sampler started from
// x_T must end at mu + s z_T: its error against that, or against many more of its own steps, shows
// its order.
#include <doctest/doctest.h>

#include <cmath>

#include "ddpm/samplers.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::ddpm;

namespace {

const double mu = 0.2, sd = 0.3;

EpsModel gaussian_oracle(const Schedule& s) {
    return [&s](const Variable& xt, const std::vector<int64_t>& t, Philox*) {
        Tensor x = xt.value().to(DType::F64), eps = Tensor::zeros(x.shape(), DType::F64);
        const int64_t per = x.numel() / x.dim(0);
        for (int64_t b = 0; b < x.dim(0); b++) {
            const double a = s.sqrt_alphas_cumprod[size_t(t[size_t(b)])], sg = s.sqrt_one_minus_alphas_cumprod[size_t(t[size_t(b)])];
            for (int64_t i = b * per; i < (b + 1) * per; i++)
                eps.set_flat(i, sg * (x.flat(i) - a * mu) / (a * a * sd * sd + sg * sg));
        }
        return Variable(eps.to(xt.value().dtype()));
    };
}

struct Moments {
    double mean, var;
};
Moments moments(const Tensor& x) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < x.numel(); i++) m += x.flat(i);
    m /= double(x.numel());
    for (int64_t i = 0; i < x.numel(); i++) v += (x.flat(i) - m) * (x.flat(i) - m);
    return {m, v / double(x.numel() - 1)};
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
    double d = 0;
    for (int64_t i = 0; i < a.numel(); i++) d += std::abs(a.flat(i) - b.flat(i));
    return d / double(a.numel());
}

}  // namespace

TEST_CASE("samplers: names, model evaluations, and the checks on steps and eta") {
    for (const char* name : {"ancestral", "ddim", "dpm++2m", "dpm++2m-sde"}) CHECK(std::string(sampler_name(parse_sampler(name))) == name);
    CHECK(parse_sampler(kDefaultSampler) == Sampler().kind);  // the flags' default and the struct's agree
    CHECK_THROWS_WITH(parse_sampler("heun"), "--sampler: expected ancestral, ddim, dpm++2m or dpm++2m-sde, got 'heun'");
    CHECK_THROWS_WITH((Sampler{SamplerKind::Ancestral, 50, 0}.validate(1000)),
                      "--ddim-steps: the ancestral sampler takes all T = 1000 steps, got 50 (ddim, dpm++2m and dpm++2m-sde take fewer)");
    CHECK_THROWS_WITH((Sampler{SamplerKind::DpmSolver2M, 1001, 0}.validate(1000)), "--ddim-steps (the sampler's steps) must be in [1, T = 1000], got 1001");
    CHECK_THROWS_WITH((Sampler{SamplerKind::Ddim, 50, 1.5}.validate(1000)), doctest::Contains("--eta must be in [0, 1]"));
    CHECK_THROWS_WITH((Sampler{SamplerKind::DpmSolver2M, 50, 0.5}.validate(1000)), "--eta is ddim's; dpm++2m takes none, got 0.5");
    // each sampler calls the model once per step
    const Schedule s = make_schedule(ScheduleKind::Linear, 100);
    for (const Sampler& sp : {Sampler{SamplerKind::Ancestral, 100, 0}, Sampler{SamplerKind::Ddim, 7, 1},
                              Sampler{SamplerKind::DpmSolver2M, 9, 0}, Sampler{SamplerKind::DpmSolver2MSde, 11, 0}}) {
        int64_t calls = 0;
        EpsModel oracle = gaussian_oracle(s);
        EpsModel counted = [&](const Variable& x, const std::vector<int64_t>& t, Philox* g) { calls++; return oracle(x, t, g); };
        Philox gen(1);
        sample(s, counted, {2, 1, 3, 3}, sp, gen);
        CHECK_MESSAGE(calls == sp.steps, sp.str());
    }
}

TEST_CASE("samplers: with the exact eps of Gaussian data, every sampler's output mean and variance reach mu and s^2") {
    const Schedule s = make_schedule(ScheduleKind::Linear, 1000);
    const EpsModel oracle = gaussian_oracle(s);
    const Shape shape{1, 1, 100, 200};  // 20,000 pixels: the mean's standard error 0.002, the variance's 1%
    for (SamplerKind kind : {SamplerKind::Ancestral, SamplerKind::Ddim, SamplerKind::DpmSolver2M, SamplerKind::DpmSolver2MSde})
        for (double eta : kind == SamplerKind::Ddim ? std::vector<double>{0, 1} : std::vector<double>{0}) {
            std::vector<int64_t> steps = kind == SamplerKind::Ancestral ? std::vector<int64_t>{1000} : std::vector<int64_t>{3, 10, 100, 1000};
            std::vector<double> err;
            for (int64_t k : steps) {
                Sampler sp{kind, k, eta};
                Philox gen(7);
                const Moments m = moments(sample(s, oracle, shape, sp, gen, false));
                err.push_back(std::abs(m.mean - mu) + std::abs(m.var - sd * sd) / (sd * sd));
                MESSAGE(sp.str(), ": mean ", m.mean, " (", mu, "), variance ", m.var, " (", sd * sd, ")");
                if (k == 1000) {
                    CHECK_MESSAGE(std::abs(m.mean - mu) < 0.01, sp.str());
                    CHECK_MESSAGE(std::abs(m.var / (sd * sd) - 1) < 0.05, sp.str());
                }
            }
            for (size_t i = 0; i + 1 < err.size(); i++) CHECK_MESSAGE(err.back() < err[i], sampler_name(kind), " eta ", eta);
        }
}

TEST_CASE("samplers: doubling the steps halves DDIM's error and quarters DPM-Solver++(2M)'s") {
    // The ODE from t = T-1 down to t_min = 99 (sigma 0.36), on timesteps evenly spaced in t (900 is
    // divisible by every k - 1 below), then the last step's x = D = x_0 predicted there. The exact
    // answer: x_{t_min} = a mu + sqrt(a^2 s^2 + sigma^2) z_T, and its x_0 prediction, the posterior
    // mean mu + a s^2 (x - a mu) / (a^2 s^2 + sigma^2); its error shrinks with the ODE's.
    const Schedule s = make_schedule(ScheduleKind::Linear, 1000);
    const EpsModel oracle = gaussian_oracle(s);
    const int64_t t_min = 99, top = s.T - 1;
    Philox g0(3);
    const Tensor xT = randn({4, 1, 8, 8}, g0, DType::F64);
    Tensor exact = Tensor::zeros(xT.shape(), DType::F64);
    {
        const double aT = s.sqrt_alphas_cumprod[size_t(top)], sT = s.sqrt_one_minus_alphas_cumprod[size_t(top)];
        const double a = s.sqrt_alphas_cumprod[size_t(t_min)], sg = s.sqrt_one_minus_alphas_cumprod[size_t(t_min)];
        for (int64_t i = 0; i < xT.numel(); i++) {
            const double z = (xT.flat(i) - aT * mu) / std::sqrt(aT * aT * sd * sd + sT * sT);
            const double x = a * mu + std::sqrt(a * a * sd * sd + sg * sg) * z;
            exact.set_flat(i, mu + a * sd * sd * (x - a * mu) / (a * a * sd * sd + sg * sg));
        }
    }
    auto timesteps = [&](int64_t k) {
        std::vector<int64_t> ts;
        for (int64_t i = 0; i < k; i++) ts.push_back(t_min + (top - t_min) * (k - 1 - i) / (k - 1));
        return ts;
    };
    auto run = [&](bool second_order, int64_t k) {
        Philox gen(5);  // unused by the deterministic samplers
        const std::vector<int64_t> ts = timesteps(k);
        if (second_order) return dpm_solver_2m(s, oracle, xT, ts, false, gen, false);
        Tensor x = xT;
        for (size_t i = 0; i < ts.size(); i++) {
            std::vector<int64_t> tb(4, ts[i]);
            x = ddim_step(s, x, predict_eps(oracle, x, tb), ts[i], i + 1 < ts.size() ? ts[i + 1] : -1, 0, gen, false);
        }
        return x;
    };
    for (bool second : {false, true}) {
        std::vector<double> err;
        for (int64_t k : {26, 51, 101}) err.push_back(mean_abs_diff(run(second, k), exact));
        for (size_t i = 1; i < err.size(); i++) {
            const double ratio = err[i - 1] / err[i];
            MESSAGE(std::string(second ? "dpm++2m" : "ddim"), ": error ", err[i - 1], " -> ", err[i], ", ratio ", ratio);
            if (second) CHECK((ratio > 3.2 && ratio < 5));
            else CHECK((ratio > 1.7 && ratio < 2.3));
        }
    }
}
