// The training run as library objects; apps/train.cpp is flags and Algorithm 1 of Ho et al. 2020
// around them:
//
//   TrainConfig     what the flags choose: data, batch, learning rate, diffusion schedule, model,
//                   EMA, clipping, seed
//   TrainState      everything a run needs to continue bit for bit: the model, Adam, the EMA, the
//                   random streams, the data cursor, the diffusion schedule and the step. save()
//                   and load() own the checkpoint's metadata keys and validate them on load
//   StepBudget      how many steps: a fixed count, or as many as fit in a time budget
//   RunFolder       the files of a run: checkpoint, loss and gradient-norm logs, sample grids
//   DiffusionModel  a checkpoint (or a fresh init) turned into a ready network and its schedule,
//                   for sample, figures, inspect and the programs that follow
//
// The checkpoint's metadata (its tensors: nn/checkpoint.h):
//   model        UNetConfig::str()                        schedule  "linear" or "cosine"
//   T            diffusion steps, an integer >= 2         steps     the count the run is sized to, 0: not yet
//   data_cursor  "epoch pos perm_seed perm_offset"        train     the whole TrainConfig, for people
//   loss_weight  "min-snr:GAMMA" when the loss is weighted (absent: uniform; "uniform" is also read)
// B batch, T diffusion steps, H, W image size.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/eval/eval.h"
#include "ddpm/report/train_log.h"
#include "nn/checkpoint.h"
#include "ddpm/report/grad_norm_log.h"
#include "nn/optim.h"
#include "nn/unet.h"

namespace dl::ddpm {

// The network as the diffusion code calls it: U-Net forward, dropout masks from the given
// generator (ddpm/diffusion.h). A class-conditional net (num_classes > 0) takes labels (B) in
// [0, num_classes] (num_classes: the null label; none given: the null label for every image)
// and a guidance weight w, classifier-free guidance (Ho & Salimans 2022, eq. 6):
//   eps = (1 + w) eps(x_t, t, c) - w eps(x_t, t, null)
// w = 0 is the conditional model alone; otherwise both halves run as one forward of 2B images.
// An unconditional net refuses labels and guidance.
EpsModel eps_model(const nn::UNet& net, std::vector<int64_t> labels = {}, double guidance = 0);
// The guidance weight of sample grids and figures when none is asked for.
constexpr double kDefaultGuidance = 1.0;  // measured: see README, "Asking for a digit"
// The labels a --class flag asks for: "" none (unconditional), "K" n times K, "all" each of the
// num_classes classes in turn, n / num_classes (rounded up) of each in order, cut to n. Errors
// name `flag`, and refuse a class for an unconditional model (num_classes 0).
std::vector<int64_t> class_labels(const std::string& text, int64_t n, int64_t num_classes, const std::string& flag);
// Classifier-free guidance's training: each label replaced by the null label with probability
// p_uncond, one uniform draw from gen per label.
std::vector<int64_t> drop_labels(std::vector<int64_t> labels, double p_uncond, int64_t null_label, Philox& gen);
// The U-Net config at the data's resolution, attention at a quarter of it (7 for 28); throws,
// naming `source`, when the images are not square with a side divisible by 4.
nn::UNetConfig model_for_data(nn::UNetConfig config, const Dataset& data, const std::string& source);

struct TrainConfig {
    std::string data_dir = "data/mnist";  // recorded for people; the data come in as a Dataset
    int64_t steps = 0;                    // total updates; 0 while a StepBudget has not sized the run
    int64_t batch = 64;
    nn::LrSchedule lr{1e-3, 100, nn::LrDecay::Cosine};  // the cosine reaches 0 at `steps`
    ScheduleKind schedule = ScheduleKind::Linear;
    int64_t T = 1000;
    nn::UNetConfig model;  // resolution and attention resolution are set from the data
    double ema_decay = 0.995;
    double ema_gamma = 0;  // > 0: the power-function EMA (nn::power_ema_decay) instead of ema_decay
    LossWeight loss_weight = LossWeight::Uniform;  // the per-t weighting of the loss (ddpm/diffusion.h)
    double snr_gamma = 5;  // min-snr's gamma
    double clip = 1.0;     // global gradient-norm clipping
    uint64_t seed = 0;     // initial weights and every random stream
    double p_uncond = 0.1; // class-conditional (model.num_classes > 0): how often a label is dropped

    // "data=... steps=... batch=... lr=... warmup=... lr_decay=... schedule=... T=... ema=... clip=... seed=..."
    // (ema=power:G for the power-function EMA; "loss_weight=min-snr:G" when weighted; "classes=...
    // p_uncond=..." when class-conditional)
    std::string str() const;
};

class TrainState {
public:
    // A fresh run on `data`: the U-Net (config.model at the data's resolution, attention at a
    // quarter of it) with weights from Philox(seed), Adam's moments at zero, the EMA a copy of the
    // weights, and three independent streams from the seed: data order, (t, eps), dropout masks.
    TrainState(const TrainConfig& config, Dataset data);

    TrainConfig config;
    Dataset data;
    Schedule schedule;
    std::vector<double> loss_weights;  // (T,) from config.loss_weight; empty when uniform
    nn::UNet model;
    nn::Adam adam;
    nn::Ema ema;
    Philox data_gen, noise_gen, dropout_gen;
    int64_t step = 0;  // updates taken

    // After backward: clips the gradient to config.clip, one Adam update at learning rate lr,
    // the EMA update, step + 1. Returns the gradient norm before clipping; when it is not finite
    // nothing is changed (no parameter, moment, EMA or step), so the state stays the last good one.
    double update(double lr);

    // The checkpoint (atomic): tensors by nn::save_checkpoint, metadata as at the top of this file.
    void save(const std::string& path) const;
    // Continues from a checkpoint written by save() (or by the train program before this type).
    // Refuses one of another model, schedule or T, and metadata that do not parse completely or are
    // out of range, naming the file and the key; on failure this state may be partly restored.
    // When config.steps is 0 it takes the checkpoint's sized count.
    void load(const std::string& path);

    // n images (n, 1, H, W) from the EMA weights: DDIM with ddim_steps steps, eta 0, and the
    // same noise every time (from the seed), so that grids drawn at different steps compare.
    Tensor sample_ema(int64_t n, int64_t ddim_steps);

private:
    std::unique_ptr<nn::UNet> ema_model_;  // the EMA weights in a network, made at the first sample
};

// How many steps a run takes. A fixed count, or (steps == 0) as many as fit in a time budget:
// after kWarm steps (the first ones fill the allocator cache), kProbe steps are timed and the count
// is set so the run fits, keeping 4% of the budget for the sample grids and checkpoints. The count
// is refined once at kRefine steps into the session: in one run on the 2-core machine the steady
// pace settled 12% below the first steps' (0.62 -> 0.71 s/step), which stretched a 30-minute budget
// to 33. The cosine decay has barely begun by then, so the learning rate changes by about 0.1%.
class StepBudget {
public:
    static constexpr int64_t kWarm = 2, kProbe = 10, kRefine = 200;
    // steps: the fixed count, or 0 to size the run to budget_seconds, of which seconds_before
    // were spent by earlier sessions; start_step: the step this session starts at. With
    // hard_limit, out_of_time() also stops a run that is not done when the budget is spent.
    StepBudget(int64_t steps, double budget_seconds, double seconds_before, int64_t start_step, bool hard_limit);

    // The total step count: the fixed or sized one, or INT64_MAX while the run is being sized.
    int64_t steps() const { return steps_; }
    bool sized() const { return steps_ != kUnsized; }
    // After step `step` has finished `seconds` into this session. True when it set or changed the
    // count (to show it); seconds_per_step() is the pace it used.
    bool after_step(int64_t step, double seconds);
    double seconds_per_step() const { return pace_; }
    // Time spent on other work (an evaluation) that the pace must not count; the budget still does.
    void exclude(double seconds) { excluded_ += seconds; }
    // With hard_limit: earlier sessions and this one together have spent the budget.
    bool out_of_time(double seconds) const;

private:
    static constexpr int64_t kUnsized = INT64_MAX;
    void fit(int64_t step, double seconds, double per_step);
    int64_t steps_, start_;
    double budget_, before_;
    bool sizing_, hard_limit_;
    double probe_start_ = 0, refine_start_ = 0, pace_ = 0, excluded_ = 0;
};

// A run's folder, as train writes it:
//   checkpoint.safetensors          TrainState::save
//   loss.csv, loss.svg              one row per step (ddpm/report/train_log.h)
//   grad_norms.csv, grad_norms.svg  every parameter tensor's gradient norm every N steps (0: none)
//   samples.png, samples_<step>.png the sample grid of each checkpoint
//   eval.csv, eval.svg, eval_pr.svg FID, precision and recall over the run (train --eval-every)
class RunFolder {
public:
    RunFolder(std::string dir, const nn::Module& model, int64_t grad_norms_every);
    std::string checkpoint() const { return dir_ + "/checkpoint.safetensors"; }
    bool has_checkpoint() const;
    // The logs of a resumed run, up to its checkpoint's step.
    void resume(int64_t step);
    double seconds_before() const { return seconds_before_; }  // wall time of the earlier sessions

    // One step's row; also keeps a moving average of the loss for progress lines.
    void log(const LogRow& row);
    double smoothed_loss() const { return smoothed_; }
    // Every grad_norms_every steps (before clipping): each parameter's gradient norm.
    void record_grad_norms(int64_t step, const Tensor& flat_grads);
    // The checkpoint, then the logs and their plots, each written atomically: a write that fails
    // (a full disk, a read-only folder) throws, saying so, and leaves every file as it was.
    void save(const TrainState& state);
    // samples.png and samples_<step>.png, sqrt(n) images a row. x (n, 1, H, W).
    void write_samples(const Tensor& x, int64_t step) const;
    // One evaluation's row, and eval.csv and the plots rewritten.
    void record_eval(int64_t step, const SampleMetrics& m);

    TrainLog loss_log;
    GradNormLog grad_norms;
    EvalLog eval_log;

private:
    std::string dir_;
    int64_t grad_norms_every_;
    double smoothed_, seconds_before_ = 0;
};

// A network ready to sample or inspect, with the schedule it was trained with.
struct DiffusionModel {
    std::string source;  // the checkpoint's path, or "fresh init, seed N"
    std::unique_ptr<nn::UNet> net;
    Schedule schedule;
    bool ema = false;    // the EMA weights were loaded
    std::string loss_weight = "uniform";  // the loss the model was trained with, "uniform" or "min-snr:GAMMA"
    std::vector<double> loss_weights;     // its per-t weights (training_loss); empty: uniform
    EpsModel eps() const { return eps_model(*net); }  // a class-conditional model: with the null label
    bool conditional() const { return net->config().num_classes > 0; }
};
enum class Weights { Trained, Ema, EmaIfPresent };
// From a checkpoint written by train: the model its metadata describe (dropout replaced when
// dropout >= 0), the chosen weights, its schedule, in eval mode. Errors name the file and the key.
DiffusionModel load_model(const std::string& path, Weights weights, double dropout = -1);
// A fresh init from Philox(seed), in training mode.
DiffusionModel fresh_model(const nn::UNetConfig& config, ScheduleKind schedule, int64_t T, uint64_t seed);
// n images (n, in_ch, R, R) in batches: DDIM with ddim_steps steps and eta, or with ddim_steps 0
// the ancestral sampler over all T steps (Algorithm 2). on_batch(done, n) after each batch.
// A class-conditional model takes labels (n) and the guidance weight (eps_model); without labels it
// samples unconditionally (the null label). clip_x0: each step's predicted x_0 clipped to [-1, 1].
Tensor draw_samples(const DiffusionModel& model, int64_t n, int64_t ddim_steps, double eta, int64_t batch, Philox& gen,
                    const ProgressFn& on_batch = nullptr, const std::vector<int64_t>& labels = {}, double guidance = 0,
                    bool clip_x0 = true);

}  // namespace dl::ddpm
