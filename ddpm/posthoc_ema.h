// Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
// Models", EDM2, sec. 3 and appendix C): choose the width of the parameters' average after
// training. During the run two power-function EMAs (nn::power_ema_decay) are kept and snapshotted
// every K steps; afterwards the average of any width is rebuilt as a weighted sum of the snapshots.
//
// A power-function EMA with exponent gamma, read at step t, averages the parameters theta(tau)
// with the profile (EDM2 eq. 2; tau continuous, theta piecewise constant on each update's (s-1, s])
//   p_{t,gamma}(tau) = (gamma + 1) tau^gamma / t^(gamma + 1),   0 <= tau <= t.
// The discrete update with decay (1 - 1/s)^(gamma + 1) weighs update s by (s^(gamma+1) -
// (s-1)^(gamma+1)) / t^(gamma+1), which is exactly the profile's integral over (s-1, s]: the
// stored EMA is that continuous average, not an approximation of it.
// Its width, the standard deviation of the profile relative to t (EDM2 eq. 3):
//   sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))
// so gamma 16.97 is sigma_rel 0.05 and 6.94 is 0.10.
// The inner product of two profiles (EDM2 appendix C.3; the integral of their product up to the
// earlier t, t_a <= t_b):
//   <p_{t_a,g_a}, p_{t_b,g_b}> = (g_a + 1)(g_b + 1) (t_a / t_b)^g_b / ((g_a + g_b + 1) t_b)
// Reconstruction: the snapshots' profiles p_i and the target's p_r; the weights x minimize
// || sum_i x_i p_i - p_r ||^2 (an L2 distance between functions of tau), i.e. A x = b with
// A_ij = <p_i, p_j> and b_i = <p_i, p_r>; the average is then sum_i x_i theta_i.
// S snapshots, P parameters.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/parse.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace dl::ddpm {

// EDM2 eq. 3 and its inverse, the real root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + 12 - s^-2 = 0
// (the cubic eq. 3 gives when squared). gamma > 0; sigma_rel in (0, sigma_rel(0) = 0.2887).
double power_ema_sigma_rel(double gamma);
double power_ema_gamma(double sigma_rel);
// The widths --ema-sigma-rel takes (tensor/parse.h): 0 asks for the checkpoint's own EMA; past
// 0.28 the power function has no gamma (sigma_rel(0) = 0.2887).
constexpr RealRange kSigmaRel{0, 0.28};
// The two widths a run snapshots (EDM2 keeps the same two): sigma_rel 0.05 and 0.10.
const std::vector<double>& posthoc_sigma_rels();

// <p_{t_a,gamma_a}, p_{t_b,gamma_b}> as above; t > 0, gamma > 0.
double power_profile_dot(double t_a, double gamma_a, double t_b, double gamma_b);

struct EmaProfile {
    int64_t step = 0;  // t: the update the EMA was read after
    double gamma = 0;
};
// The least-squares weights (S) of the snapshots for the target profile, solved in double: the
// pseudo-inverse of A from its eigen-decomposition (ddpm/eval/linalg.h), eigenvalues below
// rcond times the largest left out (as numpy's lstsq; A is a Gram matrix, symmetric and positive
// semi-definite, and nearly singular when snapshots are close together).
std::vector<double> posthoc_ema_weights(const std::vector<EmaProfile>& snapshots, const EmaProfile& target, double rcond = 1e-12);
// || sum_i x_i p_i - p_r || / || p_r ||: how far the weighted profiles are from the target's.
double posthoc_ema_residual(const std::vector<EmaProfile>& snapshots, const std::vector<double>& x, const EmaProfile& target);

// The averages a run keeps for post-hoc EMA: one power-function EMA of the parameters per gamma,
// updated with the trainer's EMA at every step (update t, 1-based).
struct PostHocEma {
    std::vector<double> gammas;   // of posthoc_sigma_rels()
    std::vector<nn::Ema> emas;    // each shadow (P)
    // Empty: off. Otherwise one EMA per sigma_rel, each a copy of params (P).
    void start(const Tensor& params, const std::vector<double>& sigma_rels);
    bool on() const { return !emas.empty(); }
    void update(const Tensor& params, int64_t t);
};

// A run's snapshots: <run>/ema_snapshots/ema_<sigma_rel %.3f>_<step %08d>.safetensors, each the
// EMA's parameters under the model's state_dict keys (it loads like a model's weights) and the
// metadata "sigma_rel", "gamma", "step", "model".
std::string snapshot_dir(const std::string& run_dir);
// Writes one snapshot per EMA of ph at `step` (atomic). model gives the keys and shapes. Returns
// the bytes written.
int64_t write_ema_snapshots(const std::string& run_dir, const nn::Module& model, const PostHocEma& ph, int64_t step);

struct EmaSnapshotFile {
    std::string path;
    EmaProfile profile;
};
// The snapshots in <run>/ema_snapshots with step <= max_step (those of a later step were written
// by a session that did not reach its next checkpoint), by sigma_rel then step. Throws naming the
// file when one's metadata do not parse.
std::vector<EmaSnapshotFile> list_ema_snapshots(const std::string& run_dir, int64_t max_step);

// The reconstruction: the average of width sigma_rel at the last snapshot's step (<= max_step),
// loaded into model's parameters. Returns what was done, for people.
struct PostHocResult {
    int64_t step = 0;          // the target t
    int64_t snapshots = 0;     // S
    double gamma = 0;          // the target's
    double residual = 0;       // posthoc_ema_residual
    double weight_l1 = 0;      // sum |x_i|: how much the sum cancels (1: a plain average)
    std::string str() const;   // "sigma_rel 0.07 (gamma ...) at step ..., from S snapshots, ..."
};
PostHocResult load_posthoc_ema(const std::string& run_dir, int64_t max_step, double sigma_rel, nn::Module& model);

}  // namespace dl::ddpm
