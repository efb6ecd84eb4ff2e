// The training run as library objects; apps/train.cpp is its flags around a Trainer:
//
//   TrainConfig     what a run learns with: data, batch, learning rate, diffusion schedule, model,
//                   EMA, clipping, seed. Its defaults are build/train's, the measured recipe
//   RunConfig       a TrainConfig and how the run goes about it: output folder, checkpoint
//                   cadence, sample grid, time budget, evaluations, non-finite steps
//   TrainState      everything a run needs to continue bit for bit: the model, Adam, the EMA, the
//                   random streams, the data cursor, the diffusion schedule and the step. save()
//                   and load() own the checkpoint's metadata keys and validate them on load
//   StepBudget      how many steps: a fixed count, or as many as fit in a time budget
//   RunFolder       the files of a run: checkpoint, loss and gradient-norm logs, sample grids
//   Trainer         a RunConfig carried out: Algorithm 1 with its checkpoints, sample grids,
//                   evaluations, non-finite steps and Ctrl-C
//   DiffusionModel  a checkpoint (or a fresh init) turned into a ready network and its schedule,
//                   for sample, figures, inspect and the programs that follow
//
// The checkpoint's metadata (its tensors: nn/checkpoint.h):
//   model        UNetConfig::str()                        schedule  "linear" or "cosine"
//   T            diffusion steps, an integer >= 2         steps     the count the run is sized to, 0: not yet
//   data_cursor  "epoch pos perm_seed perm_offset"        train     the whole TrainConfig, for people
//   loss_weight  "min-snr:GAMMA" when the loss is weighted (absent: uniform; "uniform" is also read)
//   posthoc_ema_gammas  "16.9722 6.93718": the gammas of the averages avg.0, avg.1 (post-hoc EMA;
//                absent when the run keeps none, --ema-snapshot-every 0)
// B batch, T diffusion steps, H, W image size.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/eval/eval.h"
#include "ddpm/eval/ruler.h"
#include "ddpm/posthoc_ema.h"
#include "ddpm/report/train_log.h"
#include "nn/checkpoint.h"
#include "ddpm/report/grad_norm_log.h"
#include "ddpm/samplers.h"
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
// The weights a --guidance flag takes: past about 1e38 eps overflows float32 and the images are
// NaN; 100 is far beyond any useful weight (Ho & Salimans 2022 go to 4).
constexpr RealRange kGuidance{0, 100};
// The images a program draws at once (--n): they are held together, n x H x W x 4 bytes (100,000
// MNIST digits: 314 MB), and so are their labels and features.
constexpr Range kSampleCount{1, 100'000};
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

// Every field's default is build/train's, the measured 30-minute recipe (README, "The 30-minute
// recipe"); the field's comment names its flag.
struct TrainConfig {
    std::string data_dir = "data/mnist";  // --data; recorded for people, the data come in as a Dataset
    int64_t steps = 0;                    // --steps: total updates; 0 while a StepBudget has not sized the run
    int64_t batch = 64;                   // --batch
    nn::LrSchedule lr{2e-3, 100, nn::LrDecay::Cosine};  // --lr, --warmup, --lr-decay; the cosine reaches 0 at `steps`
    ScheduleKind schedule = ScheduleKind::Linear;        // --schedule
    int64_t T = 1000;                     // --T
    nn::UNetConfig model;  // --ch, --res-blocks, --dropout, --classes; resolution and attention resolution are set from the data
    double ema_decay = 0.995;  // --ema: the fixed decay, used when ema_gamma is 0
    double ema_gamma = 6.94;   // --ema-gamma: > 0, the power-function EMA (nn::power_ema_decay) instead of ema_decay
    LossWeight loss_weight = LossWeight::Uniform;  // --loss-weight: the per-t weighting of the loss (ddpm/diffusion.h)
    double snr_gamma = 5;   // --snr-gamma: min-snr's gamma
    double clip = 1.0;      // --clip: global gradient-norm clipping
    uint64_t seed = 0;      // --seed: initial weights and every random stream
    double p_uncond = 0.1;  // --p-uncond: class-conditional (model.num_classes > 0): how often a label is dropped

    // Each numeric field's range (tensor/parse.h), which validate() checks and build/train's flags
    // state. A batch sizes every activation (make train's U-Net holds about 17 MB of them per image
    // in a step); the counts' ends (2^40) only keep them from wrapping in sums.
    static constexpr int64_t kMaxCount = int64_t(1) << 40;
    static constexpr Range kSteps{0, kMaxCount}, kBatch{1, 1024}, kWarmup{0, kMaxCount}, kT{2, kMaxT},
        kClasses{0, 255};  // IDX labels are bytes
    static constexpr RealRange kLr{1e-9, 1}, kEma{0, 0.999999}, kEmaGamma{0, 1000}, kSnrGamma{1e-3, 1e3}, kClip{1e-6, 1e6},
        kPUncond{0, 0.99};

    // make train-cond's class-conditional model: 10 classes on the reference U-Net's size (ch 32,
    // two ResBlocks per level) without its dropout, Adam at 1e-3, the fixed EMA 0.995 (the README's
    // guidance and per-class FID were measured with these).
    static TrainConfig conditional();
    // By name, as build/train --config takes it: "default" (the defaults above) or "cond"
    // (conditional()); another name throws, listing these.
    static TrainConfig named(const std::string& name);
    // Throws a dl::Error naming the first field out of range and its flag; the model's fields
    // through UNetConfig::validate. TrainState checks its config with it.
    void validate() const;

    // "data=... steps=... batch=... lr=... warmup=... lr_decay=... schedule=... T=... ema=... clip=... seed=..."
    // (ema=power:G for the power-function EMA; "loss_weight=min-snr:G" when weighted; "classes=...
    // p_uncond=..." when class-conditional)
    std::string str() const;
};

// build/train's whole configuration: what the run learns (`train`, which its checkpoint records)
// and how it goes about it. The defaults are build/train's; the comments name the flags.
struct RunConfig {
    TrainConfig train;
    std::string out = "runs/mnist";  // --out: the run's folder (RunFolder)
    bool resume = false;             // --resume: continue from out's checkpoint when it exists
    double minutes = 30;             // --minutes: the time budget train.steps = 0 sizes the run to
    bool minutes_limit = false;      // the budget also stops a run of a fixed step count (train: --minutes given)
    int64_t every = 500;             // --every: checkpoint, sample grid and curves every N steps
    int64_t samples = 64;            // --samples: images in the sample grid
    int64_t ddim_steps = kDefaultSamplerSteps;  // --ddim-steps: the sampler's steps for the sample grid
    int64_t grad_norms_every = 50;   // --grad-norms-every: each parameter's gradient norm every N steps (0: off)
    int64_t skip_nonfinite = 0;      // --skip-nonfinite: non-finite steps skipped in a row before the run stops
    bool detect_anomaly = false;     // --detect-anomaly: check every op's output and gradient for NaN/Inf
    int64_t eval_every = 0;          // --eval-every: FID, precision and recall every N steps (0: off)
    int64_t eval_n = 256;            // --eval-n: samples per evaluation
    int64_t eval_ddim_steps = kDefaultEvalSteps;  // --eval-ddim-steps: the sampler's steps for those samples
    // --sampler, --eta: the sampler of the sample grid and of the evaluations (ddpm/samplers.h);
    // its steps are ddim_steps and eval_ddim_steps (0: ancestral over all T)
    std::string sampler = kDefaultSampler;
    double eta = kDefaultEta;
    // --ema-snapshot-every: post-hoc EMA (ddpm/posthoc_ema.h): the two power-function EMAs of
    // sigma_rel 0.05 and 0.10 are kept and written to <out>/ema_snapshots every N steps and at the
    // last step, or where the time budget stops the run (0: off). 400 keeps about 40 of each in a 30-minute run of about 17,000 steps.
    int64_t ema_snapshot_every = 400;

    // The sampler of the grid and of the evaluations, from the fields above.
    Sampler grid_sampler() const { return sampler_from_flags(sampler, ddim_steps, eta, train.T); }
    Sampler eval_sampler() const { return sampler_from_flags(sampler, eval_ddim_steps, eta, train.T); }

    // Each numeric field's range, as TrainConfig's: a sample grid's and an evaluation's images are
    // allocated at once (4 bytes a pixel). The sampler's step counts take ddpm::kSamplerSteps, and T.
    static constexpr Range kEvery{1, TrainConfig::kMaxCount}, kSamples{1, 1024}, kGradNormsEvery{0, TrainConfig::kMaxCount},
        kSkipNonfinite{0, TrainConfig::kMaxCount}, kEvalEvery{0, TrainConfig::kMaxCount}, kEmaSnapshotEvery{0, TrainConfig::kMaxCount},
        kEvalN{4, 100'000};  // precision and recall use 3 neighbours
    static constexpr RealRange kMinutes{0, 1e7};

    // train.validate(), then this struct's fields, each named with its flag.
    void validate() const;
};

class TrainState {
public:
    // A fresh run on `data` (config.validate() first): the U-Net (config.model at the data's
    // resolution, attention at a quarter of it) with weights from Philox(seed), Adam's moments at
    // zero, the EMA a copy of the weights, and three independent streams from the seed: data
    // order, (t, eps), dropout masks.
    TrainState(const TrainConfig& config, Dataset data);

    TrainConfig config;
    Dataset data;
    Schedule schedule;
    std::vector<double> loss_weights;  // (T,) from config.loss_weight; empty when uniform
    nn::UNet model;
    nn::Adam adam;
    nn::Ema ema;
    PostHocEma posthoc;  // post-hoc EMA's averages (off unless started), in the checkpoint as avg.<i>.<key>
    bool posthoc_missing = false;  // load(): post-hoc EMA was on, the checkpoint had none of its averages (it is now off)
    Philox data_gen, noise_gen, dropout_gen;
    int64_t step = 0;  // updates taken

    // After backward: clips the gradient to config.clip, one Adam update at learning rate lr,
    // the EMA update, step + 1. Returns the gradient norm before clipping; when it is not finite
    // nothing is changed (no parameter, moment, EMA or step), so the state stays the last good one.
    double update(double lr);

    // The checkpoint (atomic): tensors by nn::save_checkpoint, metadata as at the top of this file.
    void save(const std::string& path) const;
    // Continues from a checkpoint written by save() (or by an older train, which wrote the same
    // tensors with fewer metadata).
    // Refuses one of another model, schedule or T, and metadata that do not parse completely or are
    // out of range, naming the file and the key; on failure this state may be partly restored.
    // When config.steps is 0 it takes the checkpoint's sized count.
    void load(const std::string& path);

    // n images (n, 1, H, W) from the EMA weights by the sampler, with the same noise every time
    // (from the seed), so that grids drawn at different steps compare.
    Tensor sample_ema(int64_t n, const Sampler& sampler);

private:
    std::unique_ptr<nn::UNet> ema_model_;  // the EMA weights in a network, made at the first sample
};

// How many steps a run takes. A fixed count, or (steps == 0) as many as fit in a time budget:
// after kWarm steps (the first ones fill the allocator cache), kProbe steps are timed and the count
// is set so the run fits, keeping 4% of the budget for the sample grids and checkpoints. The count
// is refined once at kRefine steps into the session, because the steady pace can settle below the
// first steps' (by 12% on the 2-core machine: a 30-minute budget would stretch to 33). The cosine
// decay has barely begun by then, so the learning rate changes by about 0.1%.
class StepBudget {
public:
    static constexpr int64_t kWarm = 2, kProbe = 10, kRefine = 200;
    // steps: the fixed count, or 0 to size the run to budget_seconds, of which seconds_before
    // were spent by earlier sessions; start_step: the step this session starts at. With
    // hard_limit, out_of_time() also stops a run that is not done when the budget is spent.
    StepBudget(int64_t steps, double budget_seconds, double seconds_before, int64_t start_step, bool hard_limit);

    // The total step count: the fixed or sized one, or INT64_MAX while the run is being sized.
    int64_t steps() const { return steps_; }
    // Data-parallel: every rank takes rank 0's count, sized from rank 0's clock (ddpm/parallel.h).
    void agree(int64_t steps) { steps_ = steps; }
    bool sized() const { return steps_ != kUnsized; }
    // After step `step` has finished `seconds` into this session. True when it set or changed the
    // count (to show it); seconds_per_step() is the pace it used. With hard_limit, a budget spent
    // before the probe has finished (a slow or busy machine) sizes the run to the steps taken.
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
//   eval.csv, eval.svg, eval_pr.svg the ruler's FID, KID, precision and recall over the run (train --eval-every)
//   ema_snapshots/                  post-hoc EMA's snapshots (ddpm/posthoc_ema.h; train --ema-snapshot-every)
class RunFolder {
public:
    RunFolder(std::string dir, const nn::Module& model, int64_t grad_norms_every);
    std::string checkpoint() const { return dir_ + "/checkpoint.safetensors"; }
    bool has_checkpoint() const;
    // The logs of a resumed run, up to its checkpoint's step.
    void resume(int64_t step);
    double seconds_before() const { return seconds_before_; }  // wall time of the earlier sessions

    // One step's row (loss_log.smoothed_loss() is what progress lines show).
    void log(const LogRow& row) { loss_log.add(row); }
    // Every grad_norms_every steps (before clipping): each parameter's gradient norm.
    void record_grad_norms(int64_t step, const Tensor& flat_grads);
    // The checkpoint, then the logs and their plots, each written atomically: a write that fails
    // (a full disk, a read-only folder) throws, saying so, and leaves every file as it was.
    void save(const TrainState& state);
    // samples.png and samples_<step>.png, sqrt(n) images a row. x (n, 1, H, W).
    void write_samples(const Tensor& x, int64_t step) const;
    // One evaluation's row, and eval.csv and the plots rewritten.
    void record_eval(int64_t step, const RulerMetrics& m);

    TrainLog loss_log;
    GradNormLog grad_norms;
    EvalLog eval_log;

private:
    std::string dir_;
    int64_t grad_norms_every_;
    double seconds_before_ = 0;
};

class Trainer;
class DataParallel;
// What a Trainer tells as it goes; any may be left empty.
struct TrainEvents {
    // One line for people: the run resumed, evaluations set up, a step skipped, the run sized, a
    // report.html that could not be written.
    std::function<void(const std::string& line)> note;
    ProgressFn judge_progress;                           // training the judge of eval_every (once per data set)
    std::function<void(const Trainer&)> step;            // after each step that was applied
    std::function<void(const Trainer&, bool first)> sized;  // train.steps = 0: the count was set (first) or refined
};

// A RunConfig carried out, as build/train does it.
class Trainer {
    TrainEvents events_;  // first: the constructor already tells of a resume
    DataParallel* const parallel_;  // before the members whose construction asks lead()

public:
    // Validates the config, reads the data and builds the state and the run folder. A folder that
    // holds a checkpoint is continued with config.resume, and refused without it (a run never
    // replaces another's). With eval_every, loads or trains the judge that scores the samples.
    // With `parallel` (ddpm/parallel.h; build-mpi/train) this process is one rank of a
    // data-parallel run: rank 0 alone writes files, evaluates and tells; null: one process.
    explicit Trainer(RunConfig config, TrainEvents events = {}, DataParallel* parallel = nullptr);
    ~Trainer();

    enum class End {
        Done,            // at the step count
        NothingToTrain,  // the checkpoint was already there
        OutOfTime,       // minutes_limit: the budget ran out first
        Interrupted,     // Ctrl-C or request_stop(): the checkpoint saved where the run stopped
    };
    // Algorithm 1 (with Ho & Salimans 2022's label dropout when class-conditional) up to the step
    // count. Every `every` steps and at the end: the checkpoint and logs, the sample grid from the
    // EMA weights and report.html; every eval_every steps an evaluation. A step whose loss or
    // gradient is not finite is not applied; it is repeated with anomaly detection to name the op,
    // and past skip_nonfinite such steps in a row the run throws, the last checkpoint kept. While
    // it runs, Ctrl-C (SIGINT) stops it like request_stop(); a second Ctrl-C ends the program.
    End run();
    // Stops a run() at the end of its step (from another thread or a signal handler).
    void request_stop() { stop_ = true; }

    const RunConfig config;
    TrainState state;
    RunFolder folder;
    const int64_t start_step;  // the step this session started at
    StepBudget budget;
    std::unique_ptr<Ruler> ruler;  // eval_every > 0: the judges that score samples (ddpm/eval/ruler.h)
    int64_t skipped = 0;           // steps not applied (non-finite) this session
    DataParallel* parallel() const { return parallel_; }  // null: one process
    bool lead() const;  // the process that writes files and tells: rank 0, or the only one

    double seconds() const;            // since run() started
    double images_per_second() const;  // this session's training images per second

private:
    int64_t resume_or_refuse();
    void checkpoint();
    void evaluate();
    void snapshot();  // post-hoc EMA's snapshots
    void nonfinite_step(const EpsModel& model, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps, Philox dropout_gen);
    void note(const std::string& line) const;
    std::atomic<bool> stop_{false};
    double session_start_ = 0;
    int64_t skipped_in_a_row_ = 0;
    int64_t snapshots_written_ = 0;
};

// A network ready to sample or inspect, with the schedule it was trained with.
struct DiffusionModel {
    std::string source;  // the checkpoint's path, or "fresh init, seed N"
    std::unique_ptr<nn::UNet> net;
    Schedule schedule;
    bool ema = false;    // the EMA weights were loaded
    int64_t step = 0;    // the checkpoint's step
    std::string loss_weight = "uniform";  // the loss the model was trained with, "uniform" or "min-snr:GAMMA"
    std::vector<double> loss_weights;     // its per-t weights (training_loss); empty: uniform
    EpsModel eps() const { return eps_model(*net); }  // a class-conditional model: with the null label
    bool conditional() const { return net->config().num_classes > 0; }
};
enum class Weights { Trained, Ema, EmaIfPresent };
// From a checkpoint written by train: the model its metadata describe (dropout replaced when
// dropout >= 0), the chosen weights, its schedule, in eval mode. Errors name the file and the key.
DiffusionModel load_model(const std::string& path, Weights weights, double dropout = -1);
// Replaces model's weights by the post-hoc EMA of width sigma_rel (ddpm/posthoc_ema.h) rebuilt from
// the snapshots in the checkpoint's folder up to its step; model.ema is set. Returns what was done.
PostHocResult apply_posthoc_ema(DiffusionModel& model, double sigma_rel);
// A fresh init from Philox(seed), in training mode.
DiffusionModel fresh_model(const nn::UNetConfig& config, ScheduleKind schedule, int64_t T, uint64_t seed);
// n images (n, in_ch, R, R) in batches, by the sampler (ddpm/samplers.h). on_batch(done, n) after
// each batch.
// A class-conditional model takes labels (n) and the guidance weight (eps_model); without labels it
// samples unconditionally (the null label). clip_x0: each step's predicted x_0 clipped to [-1, 1].
Tensor draw_samples(const DiffusionModel& model, int64_t n, const Sampler& sampler, int64_t batch, Philox& gen,
                    const ProgressFn& on_batch = nullptr, const std::vector<int64_t>& labels = {}, double guidance = 0,
                    bool clip_x0 = true);

}  // namespace dl::ddpm
