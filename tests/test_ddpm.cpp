// The diffusion math: schedule constants, the forward process, the posterior, the reverse step
// and DDIM, checked against independent computations and empirical moments.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "ddpm/diffusion.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::ddpm;

namespace {

// Mean and variance over many draws of each pixel, averaged over pixels.
struct Moments { std::vector<double> mean, var; };
Moments moments(const std::vector<Tensor>& draws) {
    int64_t n = draws[0].numel();
    Moments m{std::vector<double>(size_t(n), 0.0), std::vector<double>(size_t(n), 0.0)};
    for (const Tensor& d : draws)
        for (int64_t i = 0; i < n; i++) m.mean[size_t(i)] += d.flat(i) / double(draws.size());
    for (const Tensor& d : draws)
        for (int64_t i = 0; i < n; i++) m.var[size_t(i)] += std::pow(d.flat(i) - m.mean[size_t(i)], 2) / double(draws.size() - 1);
    return m;
}

// The model a perfect network would be for a known x0: the eps that makes x_t from x0.
EpsModel oracle(const Schedule& s, const Tensor& x0) {
    return [&s, x0](const Variable& xt_var, const std::vector<int64_t>& t, Philox*) {
        const Tensor& xt = xt_var.value();
        return Variable(div(sub(xt, mul(extract(s.sqrt_alphas_cumprod, t, xt.dtype()), x0)), extract(s.sqrt_one_minus_alphas_cumprod, t, xt.dtype())));
    };
}

}  // namespace

TEST_CASE("linear schedule constants against an independent computation in double") {
    Schedule s = make_schedule(ScheduleKind::Linear, 1000);
    CHECK(s.betas[0] == doctest::Approx(1e-4));
    CHECK(s.betas[999] == doctest::Approx(0.02));
    // abar_999 = exp(sum log(1 - beta_t)); the text quotes about 4.04e-5
    double log_abar = 0;
    for (int t = 0; t < 1000; t++) log_abar += std::log1p(-(1e-4 + (0.02 - 1e-4) * t / 999.0));
    CHECK(s.alphas_cumprod[999] == doctest::Approx(std::exp(log_abar)).epsilon(1e-12));
    CHECK(s.alphas_cumprod[999] == doctest::Approx(4.04e-5).epsilon(0.01));
    CHECK(s.alphas_cumprod_prev[0] == 1.0);
    CHECK(s.alphas_cumprod_prev[500] == s.alphas_cumprod[499]);
    CHECK(s.posterior_variance[0] == 0.0);
    CHECK(s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1]);
}

// Bayes' rule for Gaussians, with no schedule constant but beta: the prior
// q(x_{t-1} | x_0) = N(m x_0, v) (m, v from composing the steps one at a time) times the
// likelihood q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t), as a function of x_{t-1}, is a
// Gaussian whose precision is the sum of the precisions, 1/v + alpha_t/beta_t, and whose mean is
// the precision-weighted sum (m x_0 / v + sqrt(alpha_t) x_t / beta_t) / precision.
TEST_CASE("q_posterior is Bayes' rule for the two Gaussians, from composed single steps") {
    for (ScheduleKind kind : {ScheduleKind::Linear, ScheduleKind::Cosine}) {
        Schedule s = make_schedule(kind, 200);
        double m = 1, v = 0;  // x_{t-1} | x_0 ~ N(m x_0, v): no steps yet at t = 0
        for (int64_t t = 0; t < s.T; t++) {
            CAPTURE(t);
            double beta = s.betas[size_t(t)], alpha = 1 - beta;
            if (t >= 1) {
                double precision = 1 / v + alpha / beta;
                double x0 = 0.7, xt = -0.4;  // any two values: the mean is linear in both
                Gaussian post = q_posterior(s, Tensor::full({1, 1}, x0, DType::F64), Tensor::full({1, 1}, xt, DType::F64), {t});
                CHECK(post.variance.item() == doctest::Approx(1 / precision).epsilon(1e-9));
                CHECK(post.mean.item() == doctest::Approx((m * x0 / v + std::sqrt(alpha) * xt / beta) / precision).epsilon(1e-9));
                CHECK(post.log_variance.item() == doctest::Approx(std::log(1 / precision)).epsilon(1e-9));
            }
            // one more step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z
            m *= std::sqrt(alpha);
            v = alpha * v + beta;
            // the marginal q_sample uses in one jump is the composition of the t + 1 steps
            CHECK(s.sqrt_alphas_cumprod[size_t(t)] == doctest::Approx(m).epsilon(1e-9));
            CHECK(s.sqrt_one_minus_alphas_cumprod[size_t(t)] == doctest::Approx(std::sqrt(v)).epsilon(1e-9));
        }
    }
}

TEST_CASE("q_sample's one jump has the moments of T single steps run one after another") {
    Schedule s = make_schedule(ScheduleKind::Linear, 100);
    Philox g(11);
    Tensor x0 = Tensor::full({2000, 1}, 0.8, DType::F64);  // 2000 chains of one pixel
    Tensor x = x0;
    for (int64_t t = 0; t < 60; t++)  // x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z, for t = 0 .. 59
        x = add(mul_scalar(x, std::sqrt(s.alphas[size_t(t)])), mul_scalar(randn(x.shape(), g, DType::F64), std::sqrt(s.betas[size_t(t)])));
    Tensor jump = q_sample(s, x0, std::vector<int64_t>(2000, 59), randn(x0.shape(), g, DType::F64));
    double mean_a = 0, mean_b = 0, var_a = 0, var_b = 0;
    for (int64_t i = 0; i < 2000; i++) mean_a += x.flat(i) / 2000, mean_b += jump.flat(i) / 2000;
    for (int64_t i = 0; i < 2000; i++) var_a += std::pow(x.flat(i) - mean_a, 2) / 1999, var_b += std::pow(jump.flat(i) - mean_b, 2) / 1999;
    double sd_mean = std::sqrt((1 - s.alphas_cumprod[59]) / 2000);  // the standard error of either mean
    CHECK(std::abs(mean_a - mean_b) < 4 * std::sqrt(2.0) * sd_mean);
    CHECK(var_a == doctest::Approx(var_b).epsilon(0.15));
    CHECK(var_b == doctest::Approx(1 - s.alphas_cumprod[59]).epsilon(0.15));
}

TEST_CASE("the reverse step's variance: beta_t (fixedlarge), except beta tilde_1 at t = 0, or beta tilde_t (fixedsmall)") {
    Schedule s = make_schedule(ScheduleKind::Linear);
    Philox g(12);
    Tensor x0 = rand({1, 1, 2, 2}, g, DType::F64);
    // beta tilde_t from Bayes' rule of the two Gaussians, as in the test above
    auto beta_tilde = [&](int64_t t) { return 1 / (1 / (1 - s.alphas_cumprod[size_t(t - 1)]) + (1 - s.betas[size_t(t)]) / s.betas[size_t(t)]); };
    for (int64_t t : {0, 1, 500, 999}) {
        CAPTURE(t);
        Tensor xt = q_sample(s, x0, {t}, randn(x0.shape(), g, DType::F64));
        PMeanVariance large = p_mean_variance(s, oracle(s, x0), xt, {t}, false, VarianceKind::Beta);
        PMeanVariance small = p_mean_variance(s, oracle(s, x0), xt, {t}, false, VarianceKind::BetaTilde);
        double want_large = t == 0 ? beta_tilde(1) : s.betas[size_t(t)];
        CHECK(large.variance.item() == doctest::Approx(want_large).epsilon(1e-9));
        CHECK(std::exp(large.log_variance.item()) == doctest::Approx(want_large).epsilon(1e-9));
        if (t > 0) CHECK(small.variance.item() == doctest::Approx(beta_tilde(t)).epsilon(1e-9));
        CHECK(max_abs_diff(large.mean, small.mean) == 0.0);  // only the variance differs
    }
}

TEST_CASE("cosine schedule: abar follows f(t)/f(0), betas clipped at 0.999") {
    Schedule s = make_schedule(ScheduleKind::Cosine, 1000);
    auto f = [](double t) { double c = std::cos((t / 1000 + 0.008) / 1.008 * M_PI / 2); return c * c; };
    CHECK(s.alphas_cumprod[0] == doctest::Approx(f(1) / f(0)));
    CHECK(s.alphas_cumprod[499] == doctest::Approx(f(500) / f(0)).epsilon(1e-9));
    for (size_t t = 1; t < 1000; t++) REQUIRE(s.alphas_cumprod[t] < s.alphas_cumprod[t - 1]);
    CHECK(s.betas[999] == 0.999);
    CHECK(parse_schedule("cosine") == ScheduleKind::Cosine);
    CHECK_THROWS_WITH(parse_schedule("quad"), "schedule: expected 'linear' or 'cosine', got 'quad'");
}

TEST_CASE("q_sample: t = 0 is about x0, and its moments are sqrt(abar) x0 and 1 - abar") {
    Schedule s = make_schedule(ScheduleKind::Linear);
    Philox g(1);
    Tensor x0 = rand({2, 1, 4, 4}, g, DType::F64);
    Tensor eps = randn({2, 1, 4, 4}, g, DType::F64);
    Tensor x = q_sample(s, x0, {0, 0}, eps);
    CHECK(max_abs_diff(x, x0) < 0.01 * 5);  // sqrt(1 - abar_0) = 0.01, |eps| < 5
    std::vector<Tensor> draws;
    for (int k = 0; k < 4000; k++) draws.push_back(q_sample(s, x0, {300, 300}, randn({2, 1, 4, 4}, g, DType::F64)));
    Moments m = moments(draws);
    double a = s.alphas_cumprod[300];
    for (int64_t i = 0; i < x0.numel(); i++) {
        CHECK(std::abs(m.mean[size_t(i)] - std::sqrt(a) * x0.flat(i)) < 4 * std::sqrt((1 - a) / 4000));
        CHECK(m.var[size_t(i)] == doctest::Approx(1 - a).epsilon(0.1));
    }
    CHECK_THROWS_WITH(q_sample(s, x0, {1}, eps), "q_sample: 1 timesteps for a batch of shape (2, 1, 4, 4)");
}

TEST_CASE("the posterior step is mean + sqrt(variance) z: empirical moments match q_posterior") {
    // The slip in the text (mean + variance.sqrt(), no z) would give zero variance here.
    Schedule s = make_schedule(ScheduleKind::Linear);
    Philox g(2);
    Tensor x0 = rand({1, 1, 3, 3}, g, DType::F64);
    std::vector<int64_t> t{400};
    Tensor xt = q_sample(s, x0, t, randn(x0.shape(), g, DType::F64));
    Gaussian post = q_posterior(s, x0, xt, t);
    std::vector<Tensor> draws;
    for (int k = 0; k < 4000; k++) draws.push_back(sample_gaussian(post, t, g));
    Moments m = moments(draws);
    double var = s.posterior_variance[400];
    for (int64_t i = 0; i < x0.numel(); i++) {
        CHECK(std::abs(m.mean[size_t(i)] - post.mean.flat(i)) < 4 * std::sqrt(var / 4000));
        CHECK(m.var[size_t(i)] == doctest::Approx(var).epsilon(0.1));
    }
    // p_sample with the oracle model and beta tilde is exactly this posterior step
    PMeanVariance p = p_mean_variance(s, oracle(s, x0), xt, t, false, VarianceKind::BetaTilde);
    CHECK(max_abs_diff(p.pred_x0, x0) < 1e-9);
    CHECK(max_abs_diff(p.mean, post.mean) < 1e-9);
    CHECK(p.variance.item() == doctest::Approx(var));
    PMeanVariance large = p_mean_variance(s, oracle(s, x0), xt, t, false, VarianceKind::Beta);
    CHECK(large.variance.item() == doctest::Approx(s.betas[400]));
    // at t = 0 the step adds no noise
    Gaussian last = q_posterior(s, x0, xt, {0});
    CHECK(max_abs_diff(sample_gaussian(last, {0}, g), last.mean) == 0.0);
}

TEST_CASE("DDIM with eta = 1, one step at a time, has the ancestral step's moments") {
    Schedule s = make_schedule(ScheduleKind::Linear);
    Philox g(3);
    Tensor x0 = rand({1, 1, 2, 2}, g, DType::F64);
    for (int64_t t : {1, 250, 999}) {
        CAPTURE(t);
        Tensor xt = q_sample(s, x0, {t}, randn(x0.shape(), g, DType::F64));
        Tensor eps = oracle(s, x0)(Variable(xt), {t}, nullptr).value();
        Gaussian post = q_posterior(s, x0, xt, {t});
        std::vector<Tensor> draws;
        for (int k = 0; k < 4000; k++) draws.push_back(ddim_step(s, xt, eps, t, t - 1, 1.0, g, false));
        Moments m = moments(draws);
        double var = s.posterior_variance[size_t(t)];
        for (int64_t i = 0; i < x0.numel(); i++) {
            CHECK(std::abs(m.mean[size_t(i)] - post.mean.flat(i)) < 4 * std::sqrt(var / 4000) + 1e-12);
            CHECK(m.var[size_t(i)] == doctest::Approx(var).epsilon(0.1));
        }
        // eta = 0 is deterministic and lands on the posterior mean's x0 direction
        Tensor d0 = ddim_step(s, xt, eps, t, t - 1, 0.0, g, false);
        CHECK(max_abs_diff(d0, ddim_step(s, xt, eps, t, t - 1, 0.0, g, false)) == 0.0);
    }
    CHECK(ddim_timesteps(1000, 5) == std::vector<int64_t>{999, 749, 500, 250, 0});
    CHECK(ddim_timesteps(1000, 1000).back() == 0);
}

TEST_CASE("the oracle reverse process recovers x0, and sampling loops run end to end") {
    Schedule s = make_schedule(ScheduleKind::Linear, 50);
    Philox g(4);
    Tensor x0 = sub(mul_scalar(rand({2, 1, 4, 4}, g), 2.0), Tensor::scalar(1.0));
    int steps = 0;
    Tensor x = p_sample_loop(s, oracle(s, x0), x0.shape(), g, true, VarianceKind::BetaTilde, [&](int64_t, const Tensor&) { steps++; });
    CHECK(steps == 50);
    CHECK(max_abs_diff(x, x0) < 1e-4);
    Tensor y = ddim_sample(s, oracle(s, x0), x0.shape(), 10, 0.0, g);
    CHECK(max_abs_diff(y, x0) < 1e-4);
}

TEST_CASE("per_sample_mse") {
    Tensor a = Tensor::from_vector(std::vector<double>{1, 1, 0, 0}, {2, 2});
    Tensor b = Tensor::zeros({2, 2}, DType::F64);
    std::vector<double> m = per_sample_mse(a, b);
    REQUIRE(m.size() == 2);
    CHECK(m[0] == 1.0);
    CHECK(m[1] == 0.0);
}

TEST_CASE("min-SNR-gamma: the eps loss it weighs is the x0 error weighted by min(SNR, gamma)") {
    // Hang et al. 2023 define the weighting on the x0 error; for eps-prediction
    // ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR_t, so the eps weight must turn the eps error
    // into min(SNR_t, gamma) ||x0 - x0_hat||^2. Checked through q_sample and predict_x0_from_eps.
    Schedule s = make_schedule(ScheduleKind::Linear, 1000);
    const double gamma = 5;
    std::vector<double> w = loss_weights(s, LossWeight::MinSnr, gamma);
    REQUIRE(w.size() == 1000);
    Philox g(11);
    Tensor x0 = rand({1, 1, 6, 6}, g, DType::F64);
    Tensor eps = randn({1, 1, 6, 6}, g, DType::F64), eps_hat = randn({1, 1, 6, 6}, g, DType::F64);
    int noisy = 0, clean = 0;
    for (int64_t t : {0, 10, 50, 100, 150, 200, 400, 999}) {
        double snr = s.alphas_cumprod[size_t(t)] / (1 - s.alphas_cumprod[size_t(t)]);
        Tensor xt = q_sample(s, x0, {t}, eps);
        double x0_err = per_sample_mse(predict_x0_from_eps(s, xt, {t}, eps_hat), x0)[0];
        double eps_err = per_sample_mse(eps_hat, eps)[0];
        INFO("t = " << t << ", SNR " << snr);
        CHECK(w[size_t(t)] * eps_err == doctest::Approx(std::min(snr, gamma) * x0_err).epsilon(1e-9));
        CHECK(w[size_t(t)] <= 1.0);
        (snr > gamma ? clean : noisy)++;
    }
    CHECK(clean >= 3);  // both sides of SNR = gamma are visited
    CHECK(noisy >= 3);
    for (double v : loss_weights(s, LossWeight::Uniform)) CHECK(v == 1.0);
    CHECK_THROWS_WITH(loss_weights(s, LossWeight::MinSnr, 0), doctest::Contains("gamma > 0"));
    CHECK(parse_loss_weight("min-snr") == LossWeight::MinSnr);
    CHECK_THROWS_WITH(parse_loss_weight("snr"), "loss weighting: expected 'uniform' or 'min-snr', got 'snr'");
}

TEST_CASE("training_loss with per-t weights: the weighted mean of each image's error, and its gradient in float64") {
    Schedule s = make_schedule(ScheduleKind::Linear, 100);
    std::vector<double> w = loss_weights(s, LossWeight::MinSnr, 5);
    Philox g(12);
    Tensor x0 = rand({3, 1, 4, 4}, g, DType::F64), eps = randn({3, 1, 4, 4}, g, DType::F64);
    std::vector<int64_t> t{0, 20, 90};
    Variable scale(randn({1, 1, 4, 4}, g, DType::F64), true, "scale");  // the "network": eps_hat = scale * x_t
    EpsModel model = [&scale](const Variable& xt, const std::vector<int64_t>&, Philox*) { return mul(xt, scale); };
    Variable loss = training_loss(s, model, x0, t, eps, nullptr, w);
    Tensor pred = mul(q_sample(s, x0, t, eps), scale.value());
    std::vector<double> per_image = per_sample_mse(pred, eps);
    double expect = 0;
    for (size_t b = 0; b < 3; b++) expect += w[size_t(t[b])] * per_image[b] / 3;
    CHECK(loss.value().item() == doctest::Approx(expect).epsilon(1e-12));
    CHECK(training_loss(s, model, x0, t, eps, nullptr, loss_weights(s, LossWeight::Uniform)).value().item() ==
          doctest::Approx(training_loss(s, model, x0, t, eps).value().item()).epsilon(1e-12));
    GradcheckReport r = gradcheck_leaves([&] { return training_loss(s, model, x0, t, eps, nullptr, w); }, {scale});
    INFO(r.str());
    CHECK(r.ok);
    CHECK_THROWS_WITH(training_loss(s, model, x0, t, eps, nullptr, std::vector<double>(99, 1.0)),
                      "training_loss: 99 loss weights for T = 100");
}
