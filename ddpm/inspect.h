// Inspecting one step of DDPM training: every gradient of the noise-prediction loss, by name.
//
// inspect_training_loss() runs Algorithm 1's loss || eps - eps_theta(x_t, t) ||^2 once, forward
// and backward, keeping the graph and every intermediate gradient, so that the graph's nodes
// (autograd/inspect.h: graph_order, node_stats, graph_dot) can be printed, drawn and dumped.
// inspection_dump() puts all of it in one safetensors file for NumPy or PyTorch:
//
//   input.x0 (B, C, H, W)   input.t (B) I64   input.eps (B, C, H, W)   input.xt (B, C, H, W)   loss ()
//   param.<key>, grad.<key>          every parameter and its gradient, keys as in the checkpoint
//   act.<name>, grad.act.<name>      every op's output and its gradient ("act.mid.attn.softmax")
//   metadata: "model", "schedule", "T", "dropout_seed", "format"
//
// gradcheck_training_loss() checks the parameters' gradients of the same loss against central
// finite differences in float64; per_t_sweep() shows how loss and gradient norm depend on t.
// B batch, C channels, H, W, T diffusion steps.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "ddpm/diffusion.h"
#include "nn/module.h"
#include "tensor/formats/safetensors.h"

namespace dl::ddpm {

struct InspectBatch {
    Tensor x0;                  // (B, C, H, W) clean images in [-1, 1]
    std::vector<int64_t> t;     // (B) timesteps in [0, T)
    Tensor eps;                 // (B, C, H, W) the noise, N(0, I)
};
// t all equal to t_fixed (when >= 0) or drawn uniformly from [0, T), then eps, both from gen.
InspectBatch make_batch(const Tensor& x0, int64_t T, int64_t t_fixed, Philox& gen);

struct Inspection {
    InspectBatch batch;
    Tensor xt;                    // (B, C, H, W) q_sample(x0, t, eps)
    Variable loss;                // () the loss; its graph is kept
    std::vector<Variable> nodes;  // graph_order(loss): parameters, inputs and activations
    double forward_seconds = 0, backward_seconds = 0;
};

// Zeroes the model's gradients, then one forward and backward of training_loss with the graph
// kept (backward(keep_graph = true)) and every intermediate gradient retained. Dropout masks come
// from Philox(dropout_seed). Activation names are made unique (nn::make_names_unique).
// weights: the run's per-t loss weights (training_loss; empty for Algorithm 1's uniform loss).
Inspection inspect_training_loss(const Schedule& s, nn::Module& model, const EpsModel& net, const InspectBatch& batch,
                                 uint64_t dropout_seed, const std::vector<double>& weights = {});

// Everything above as one safetensors file (see the top of this file). A parameter without a
// gradient gets zeros; an activation without one (no path to the loss) gets no grad.act entry.
Safetensors inspection_dump(const Inspection& in, const nn::Module& model, const Schedule& s, uint64_t dropout_seed);

// Central finite differences of the loss against backward, for opt.max_coords random coordinates
// of every parameter tensor. The model is converted to float64 for the check (Module::to) and
// back to its dtype afterwards; the batch is converted too. Every evaluation draws its dropout
// masks from a fresh Philox(dropout_seed), so the loss is one smooth function of the parameters.
// Only the parameters whose key contains `match` are checked ("" for all; the loss is always
// the whole model's). opt.on_eval can show progress.
GradcheckReport gradcheck_training_loss(const Schedule& s, nn::Module& model, const EpsModel& net, const InspectBatch& batch,
                                        uint64_t dropout_seed, const GradcheckOptions& opt, const std::string& match = "",
                                        const std::vector<double>& weights = {});

// ---- loss and gradient norm against t ------------------------------------------------------
struct PerTRow {
    int64_t t_lo, t_hi;  // the bucket [t_lo, t_hi)
    double t_mean;       // mean timestep of the batch
    double loss;         // training loss of the batch
    double grad_norm;    // global L2 norm of the parameters' gradient
};
// Splits [0, T) into `buckets` equal ranges; for each, the same x0 and eps with the B timesteps
// spread evenly over the range, and the same dropout masks (Philox(dropout_seed)): only t changes.
std::vector<PerTRow> per_t_sweep(const Schedule& s, nn::Module& model, const EpsModel& net, const Tensor& x0, const Tensor& eps,
                                 int64_t buckets, uint64_t dropout_seed, const std::vector<double>& weights = {});
// "t_lo,t_hi,t_mean,loss,grad_norm" rows, and both curves against t on a log y axis.
void write_per_t_csv(const std::string& path, const std::vector<PerTRow>& rows);
void write_per_t_svg(const std::string& path, const std::vector<PerTRow>& rows, const std::string& title);
std::string per_t_svg(const std::vector<PerTRow>& rows, const std::string& title);  // that plot's SVG text
// The rows of a file write_per_t_csv wrote; errors name the file and the line.
std::vector<PerTRow> read_per_t_csv(const std::string& path);

}  // namespace dl::ddpm
