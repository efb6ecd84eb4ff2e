#include "ddpm/eval/likelihood.h"

#include <algorithm>
#include <cmath>

#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "ddpm/report/svg.h"

namespace dl::ddpm {

double normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
    double d = mean1 - mean2;
    return 0.5 * (-1 + logvar2 - logvar1 + std::exp(logvar1 - logvar2) + d * d * std::exp(-logvar2));
}

// The standard normal CDF, the tanh approximation of the official code.
static double approx_standard_normal_cdf(double z) {
    return 0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
}

double discretized_gaussian_log_likelihood(double x, double mean, double log_scale) {
    double inv_stdv = std::exp(-log_scale), c = x - mean;
    double cdf_plus = approx_standard_normal_cdf(inv_stdv * (c + 1 / 255.0));
    double cdf_min = approx_standard_normal_cdf(inv_stdv * (c - 1 / 255.0));
    double p = x < -0.999 ? cdf_plus : x > 0.999 ? 1 - cdf_min : cdf_plus - cdf_min;
    return std::log(std::max(p, 1e-12));
}

// x0 quantized to the 256-level grid, as the data are.
static double quantize(double x) { return std::round((std::clamp(x, -1.0, 1.0) + 1) * 127.5) / 127.5 - 1; }

BpdReport calc_bpd_loop(const Schedule& s, const EpsModel& model, const Tensor& x0_in, int64_t t_stride, int64_t batch, Philox& gen,
                        VarianceKind var, const ProgressFn& on_step) {
    if (x0_in.ndim() != 4 || x0_in.dim(0) < 1) fail("calc_bpd_loop: expected images (N, C, H, W), got ", shape_str(x0_in.shape()));
    if (t_stride < 1 || t_stride >= s.T) fail("calc_bpd_loop: t_stride must be in [1, T = ", s.T, "), got ", t_stride);
    if (batch < 1) fail("calc_bpd_loop: batch must be positive, got ", batch);
    const int64_t N = x0_in.dim(0), D = x0_in.numel() / N;
    Tensor x0 = x0_in.to(DType::F32).clone();  // (N, C, H, W) on the grid
    for (int64_t i = 0; i < x0.numel(); i++) x0.set_flat(i, quantize(x0.flat(i)));

    BpdReport r;
    r.n_images = N;
    r.t_stride = t_stride;
    for (int64_t hi = s.T - 1; hi >= 1; hi -= t_stride) {  // the block [lo, hi], from the top down
        const int64_t lo = std::max<int64_t>(1, hi - t_stride + 1);
        double u;
        gen.uniform(&u, 1);
        r.t.push_back(std::min(hi, lo + int64_t(u * double(hi - lo + 1))));
        r.weight.push_back(double(hi - lo + 1));
    }
    r.t.push_back(0);
    r.weight.push_back(1);
    r.term_bpd.assign(r.t.size(), 0.0);
    std::vector<double> total(static_cast<size_t>(N), 0.0);  // each image's bound
    const double to_bits = 1 / (double(D) * std::log(2.0));

    // the prior term: q(x_T | x_0) = N(sqrt(abar) x0, 1 - abar) against N(0, 1)
    const double abar = s.alphas_cumprod.back();
    for (int64_t n = 0; n < N; n++) {
        double kl = 0;
        for (int64_t i = 0; i < D; i++) kl += normal_kl(std::sqrt(abar) * x0.flat(n * D + i), std::log(1 - abar), 0, 0);
        total[size_t(n)] += kl * to_bits;
        r.prior_bpd += kl * to_bits / double(N);
    }

    const int64_t batches = (N + batch - 1) / batch, passes = int64_t(r.t.size()) * batches;
    int64_t done = 0;
    for (size_t k = 0; k < r.t.size(); k++) {
        const int64_t t = r.t[k];
        for (int64_t b0 = 0; b0 < N; b0 += batch) {
            const int64_t B = std::min(batch, N - b0);
            Tensor xb = x0.rows(b0, B);
            std::vector<int64_t> ts(static_cast<size_t>(B), t);
            Tensor xt = q_sample(s, xb, ts, randn(xb.shape(), gen));
            Gaussian truth = q_posterior(s, xb, xt, ts);
            PMeanVariance p = p_mean_variance(s, model, xt, ts, true, var);
            for (int64_t n = 0; n < B; n++) {
                double term = 0;
                const double lv_p = p.log_variance.flat(n);
                for (int64_t i = 0; i < D; i++) {
                    const int64_t e = n * D + i;
                    term += t > 0 ? normal_kl(truth.mean.flat(e), truth.log_variance.flat(n), p.mean.flat(e), lv_p)
                                  : -discretized_gaussian_log_likelihood(xb.flat(e), p.mean.flat(e), 0.5 * lv_p);
                }
                term *= to_bits;
                r.term_bpd[k] += term / double(N);
                total[size_t(b0 + n)] += r.weight[k] * term;
            }
            if (on_step) on_step(++done, passes);
        }
    }
    r.decoder_bpd = r.term_bpd.back();
    double mean = 0, var_sum = 0;
    for (double v : total) mean += v / double(N);
    for (double v : total) var_sum += (v - mean) * (v - mean);
    r.total_bpd = mean;
    r.total_se = N > 1 ? std::sqrt(var_sum / double(N - 1) / double(N)) : 0;
    return r;
}

void write_bpd_csv(const std::string& path, const BpdReport& r, int64_t T) {
    std::string out = "t,bpd\n" + cat(T, ",", r.prior_bpd, "\n");
    for (size_t k = 0; k < r.t.size(); k++) out += cat(r.t[k], ",", r.term_bpd[k], "\n");
    write_file_atomic(path, out);
}

void write_bpd_svg(const std::string& path, const BpdReport& r, const std::string& title) {
    Series terms{cat("KL and decoder terms (every ", r.t_stride, ". t)"), {}, {}};
    for (size_t k = r.t.size(); k-- > 0;) {
        terms.x.push_back(double(r.t[k]));
        terms.y.push_back(std::max(r.term_bpd[k], 1e-12));
    }
    write_svg_plot(path, title, "t", "bits/dim", {terms}, true);
}

}  // namespace dl::ddpm
