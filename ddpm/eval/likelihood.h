// The variational bound on the negative log-likelihood (Ho et al. 2020, eq. 5), in bits per
// dimension, as the official code's calc_bpd_loop computes it (hojonathanho/diffusion,
// diffusion_utils_2.py; openai/improved-diffusion agrees):
//
//   L = L_T + sum_{t>1} L_{t-1} + L_0
//   L_T     = KL(q(x_T | x_0) || N(0, I))                                    the prior term
//   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))             x_t ~ q(x_t | x_0)
//   L_0     = -log p_theta(x_0 | x_1), the discretized Gaussian decoder        (eq. 13)
//
// each a mean over the pixels divided by ln 2 (bits per dimension). Timesteps are 0-based as in
// diffusion.h: the decoder is t = 0, the KL terms t = 1 .. T-1, the prior uses abar_{T-1}.
// B batch, C channels, H, W, T diffusion steps.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/diffusion.h"

namespace dl::ddpm {

// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) per element:
//   0.5 (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2))
double normal_kl(double mean1, double logvar1, double mean2, double logvar2);

// log P(x) of a pixel x in [-1, 1] on the 256-level grid (x = k / 127.5 - 1) under N(mean, exp(log_scale)^2)
// integrated over its bin [x - 1/255, x + 1/255]; the first bin extends to -inf and the last to +inf,
// so the 256 probabilities sum to 1. Phi(z) ~ 0.5 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))), as the
// official code, and the probability clamped at 1e-12 before the log.
double discretized_gaussian_log_likelihood(double x, double mean, double log_scale);

struct BpdReport {
    int64_t n_images = 0;
    int64_t t_stride = 1;                 // one KL term evaluated per t_stride timesteps
    std::vector<int64_t> t;               // the timesteps evaluated, from T-1 down to 0
    std::vector<double> weight;           // how many terms each stands for (1 for t = 0)
    std::vector<double> term_bpd;         // their terms, the mean over the images (bits/dim)
    double prior_bpd = 0;                 // L_T
    double decoder_bpd = 0;               // L_0
    double total_bpd = 0;                 // L = prior + sum weight * term: the mean over the images
    double total_se = 0;                  // the standard error of total_bpd over the images
};

// The bound for the images x0 (N, C, H, W) in [-1, 1] (quantized to 256 levels). With t_stride
// k > 1 the KL terms are sampled, stratified: t = 1 .. T-1 is cut into blocks of k (the last one
// shorter), one t drawn uniformly in each block stands for the block (weight: its length), so the
// sum is unbiased; the decoder and prior terms are always exact. k = 1 is the official loop.
// Fresh noise per term from gen; p_theta with x_0 clipped to [-1, 1] and variance `var`.
// on_step(done, total) counts forward passes.
BpdReport calc_bpd_loop(const Schedule& s, const EpsModel& model, const Tensor& x0, int64_t t_stride, int64_t batch, Philox& gen,
                        VarianceKind var = VarianceKind::Beta, const ProgressFn& on_step = nullptr);

// "t,bpd" per evaluated term (the prior as t = T), and the terms against t on a log y axis.
void write_bpd_csv(const std::string& path, const BpdReport& r, int64_t T);
void write_bpd_svg(const std::string& path, const BpdReport& r, const std::string& title);

}  // namespace dl::ddpm
