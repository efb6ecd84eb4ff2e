// The training run: state, checkpoint metadata, step budget, run folder (see trainer.h).
#include "ddpm/trainer.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>

#include "autograd/anomaly.h"
#include "autograd/ops.h"
#include "ddpm/parallel.h"
#include "ddpm/report/report.h"
#include "tensor/ops.h"
#include "tensor/parse.h"
#include "tensor/formats/io.h"
#include "tensor/formats/png.h"

namespace dl::ddpm {

nn::UNetConfig model_for_data(nn::UNetConfig c, const Dataset& data, const std::string& source) {
    if (data.rows() != data.cols() || data.rows() % 4 || data.rows() == 0)
        fail(source, ": images are ", data.rows(), "x", data.cols(), "; the U-Net needs square images with a side divisible by 4");
    c.resolution = data.rows();
    c.attn_res = {data.rows() / 4};
    return c;
}

EpsModel eps_model(const nn::UNet& net, std::vector<int64_t> labels, double guidance) {
    if (net.config().num_classes == 0) {
        if (!labels.empty() || guidance != 0) fail("eps_model: labels or guidance for an unconditional model (num_classes=0)");
        return [&net](const Variable& xt, const std::vector<int64_t>& t, Philox* dropout_gen) { return net.forward(xt, t, dropout_gen); };
    }
    if (labels.empty() && guidance != 0) fail("eps_model: guidance without labels (which classes?)");
    return [&net, labels, guidance](const Variable& xt, const std::vector<int64_t>& t, Philox* dropout_gen) {
        const int64_t B = xt.shape()[0];
        std::vector<int64_t> c = labels.empty() ? std::vector<int64_t>(size_t(B), net.null_label()) : labels;
        if (int64_t(c.size()) != B) fail("eps_model: ", c.size(), " labels for a batch of ", B);
        if (guidance == 0) return net.forward(xt, t, dropout_gen, &c);
        // eps = (1 + w) eps(x_t, t, c) - w eps(x_t, t, null): both halves in one forward of 2B images
        std::vector<int64_t> t2(t), c2(c);
        t2.insert(t2.end(), t.begin(), t.end());
        c2.insert(c2.end(), size_t(B), net.null_label());
        Variable both = net.forward(concat({xt, xt}, 0), t2, dropout_gen, &c2);  // (2B, C, H, W)
        return (1 + guidance) * slice(both, 0, 0, B) - guidance * slice(both, 0, B, 2 * B);
    };
}

std::vector<int64_t> class_labels(const std::string& text, int64_t n, int64_t num_classes, const std::string& flag) {
    if (text.empty()) return {};
    if (num_classes == 0) fail(flag, " ", text, ": the checkpoint's model is unconditional (trained without --classes)");
    std::vector<int64_t> labels;
    if (text == "all") {
        int64_t per = (n + num_classes - 1) / num_classes;
        for (int64_t i = 0; i < n; i++) labels.push_back(i / per);
        return labels;
    }
    int64_t k = -1;
    if (!read_integer<int64_t>(text, k, 0, num_classes - 1)) fail(flag, " expects 'all' or a class in [0, ", num_classes, "), got '", text, "'");
    return std::vector<int64_t>(size_t(n), k);
}

std::vector<int64_t> drop_labels(std::vector<int64_t> labels, double p_uncond, int64_t null_label, Philox& gen) {
    if (!(p_uncond >= 0 && p_uncond <= 1)) fail("drop_labels: p_uncond must be in [0, 1], got ", p_uncond);
    std::vector<double> u(labels.size());
    gen.uniform(u.data(), int64_t(u.size()));
    for (size_t i = 0; i < labels.size(); i++)
        if (u[i] < p_uncond) labels[i] = null_label;
    return labels;
}

TrainConfig TrainConfig::conditional() {
    TrainConfig c;
    c.model = nn::UNetConfig::reference();
    c.model.dropout = 0;  // the recipe's: no dropout in a 30-minute run
    c.model.num_classes = 10;
    c.lr.base = 1e-3;
    c.ema_decay = 0.995;
    c.ema_gamma = 0;
    return c;
}

TrainConfig TrainConfig::named(const std::string& name) {
    if (name == "default") return TrainConfig();
    if (name == "cond") return conditional();
    fail("TrainConfig: no configuration named '", name, "' (default or cond)");
}

namespace {
// "TrainConfig: batch (--batch) must be in [1, 1024], got 5000"
template <class T, class R>
void check(const char* what, T v, R range, const char* note = "") {
    if (!range.contains(v)) fail(what, " must be in [", range.lo, ", ", range.hi, "]", note, ", got ", v);
}
}  // namespace

void TrainConfig::validate() const {
    check("TrainConfig: steps (--steps)", steps, kSteps, " (0: sized to a time budget)");
    check("TrainConfig: batch (--batch)", batch, kBatch);
    check("TrainConfig: lr.base (--lr)", lr.base, kLr);
    check("TrainConfig: lr.warmup (--warmup)", lr.warmup, kWarmup);
    check("TrainConfig: T (--T)", T, kT);
    check("TrainConfig: ema_decay (--ema)", ema_decay, kEma);
    check("TrainConfig: ema_gamma (--ema-gamma)", ema_gamma, kEmaGamma, " (0: the fixed --ema)");
    check("TrainConfig: snr_gamma (--snr-gamma)", snr_gamma, kSnrGamma);
    check("TrainConfig: clip (--clip)", clip, kClip);
    check("TrainConfig: p_uncond (--p-uncond)", p_uncond, kPUncond);
    check("TrainConfig: model.num_classes (--classes)", model.num_classes, kClasses, " (0: unconditional; IDX labels are bytes)");
    model.validate();
}

void RunConfig::validate() const {
    train.validate();
    check("RunConfig: minutes (--minutes)", minutes, kMinutes);
    if (train.steps == 0 && minutes == 0)
        fail("RunConfig: minutes (--minutes) must be positive when train.steps (--steps) is 0, which sizes the run to it");
    check("RunConfig: every (--every)", every, kEvery);
    check("RunConfig: samples (--samples)", samples, kSamples);
    check("RunConfig: ddim_steps (--ddim-steps)", ddim_steps, Range{kSamplerSteps.lo, train.T}, " (T; 0: the ancestral sampler over all T)");
    check("RunConfig: grad_norms_every (--grad-norms-every)", grad_norms_every, kGradNormsEvery, " (0: off)");
    check("RunConfig: skip_nonfinite (--skip-nonfinite)", skip_nonfinite, kSkipNonfinite);
    check("RunConfig: eval_every (--eval-every)", eval_every, kEvalEvery, " (0: off)");
    check("RunConfig: eval_n (--eval-n)", eval_n, kEvalN, " (precision and recall use 3 neighbours)");
    check("RunConfig: eval_ddim_steps (--eval-ddim-steps)", eval_ddim_steps, Range{kSamplerSteps.lo, train.T},
          " (T; 0: the ancestral sampler over all T)");
    check("RunConfig: eta (--eta)", eta, kEta);
    try {
        parse_sampler(sampler);
    } catch (const Error& e) {
        fail("RunConfig: sampler (--sampler): ", e.what());
    }
    for (const auto& [what, steps] : {std::pair{"sample grid (--ddim-steps)", ddim_steps}, std::pair{"evaluations (--eval-ddim-steps)", eval_ddim_steps}})
        try {
            sampler_from_flags(sampler, steps, eta, train.T);
        } catch (const Error& e) {
            fail("RunConfig: sampler, eta (--sampler, --eta) of the ", what, ": ", e.what());
        }
    check("RunConfig: ema_snapshot_every (--ema-snapshot-every)", ema_snapshot_every, kEmaSnapshotEvery, " (0: off)");
}

std::string TrainConfig::str() const {
    return cat("data=", data_dir, " steps=", steps, " batch=", batch, " lr=", lr.base, " warmup=", lr.warmup, " lr_decay=",
               nn::lr_decay_name(lr.decay), " schedule=", schedule_name(schedule), " T=", T, " ema=",
               ema_gamma > 0 ? cat("power:", ema_gamma) : cat(ema_decay), " clip=", clip, " seed=", seed,
               loss_weight == LossWeight::MinSnr ? cat(" loss_weight=min-snr:", snr_gamma) : std::string(),
               model.num_classes > 0 ? cat(" classes=", model.num_classes, " p_uncond=", p_uncond) : std::string());
}

// ---- checkpoint metadata ------------------------------------------------------------------
namespace {

// An integer that must parse completely and lie in [lo, hi].
int64_t meta_integer(const nn::Checkpoint& ck, const std::string& key, int64_t lo, int64_t hi) {
    const std::string& text = ck.meta(key);
    int64_t v = 0;
    if (!read_integer(text, v, lo, hi))
        fail(ck.source, ": metadata '", key, "' is '", text, "', expected an integer in [", lo, ", ", hi, "]");
    return v;
}

nn::UNetConfig meta_model(const nn::Checkpoint& ck) {
    const std::string& text = ck.meta("model");
    try {
        return nn::UNetConfig::parse(text);
    } catch (const Error& e) {
        fail(ck.source, ": metadata 'model': ", e.what());
    }
}

ScheduleKind meta_schedule(const nn::Checkpoint& ck) {
    const std::string& text = ck.meta("schedule");
    try {
        return parse_schedule(text);
    } catch (const Error& e) {
        fail(ck.source, ": metadata 'schedule': ", e.what());
    }
}

// "epoch pos perm_seed perm_offset": four unsigned integers, single spaces between them.
DataCursor meta_cursor(const nn::Checkpoint& ck) {
    const std::string& text = ck.meta("data_cursor");
    uint64_t v[4];
    bool ok = true;
    size_t at = 0;
    for (int i = 0; i < 4 && ok; i++) {
        const size_t space = i < 3 ? text.find(' ', at) : text.size();
        ok = space != std::string::npos && read_integer<uint64_t>(std::string_view(text).substr(at, space - at), v[i]);
        at = space + 1;
    }
    if (!ok) fail(ck.source, ": metadata 'data_cursor' is '", text, "', expected four unsigned integers");
    return {v[0], v[1], v[2], v[3]};
}

Philox meta_rng(const nn::Checkpoint& ck, const std::string& name) {
    auto it = ck.rngs.find(name);
    if (it == ck.rngs.end()) fail(ck.source, ": no random stream 'rng.", name, "' (not a checkpoint written by build/train?)");
    return it->second;
}

TrainConfig fit_to_data(TrainConfig c, const Dataset& data) {
    c.validate();
    c.model = model_for_data(c.model, data, c.data_dir);
    if (int64_t K = c.model.num_classes; K > 0) {  // class-conditional: every image needs a label in [0, K)
        const std::string labels = c.data_dir + "/train-labels-idx1-ubyte";
        if (data.labels().empty()) fail("train: --classes ", K, " needs a label per image, and ", labels, " is missing");
        for (size_t i = 0; i < data.labels().size(); i++)
            if (data.labels()[i] >= K)
                fail(labels, ": label ", int(data.labels()[i]), " of image ", i, " is outside [0, ", K, ") (--classes ", K, ")");
    }
    return c;
}

// Independent random streams from one seed: k = 1 data order, 2 timesteps and noise, 3 dropout.
Philox stream(uint64_t seed, uint64_t k) { return Philox(seed * 0x9E3779B97F4A7C15ull + k); }

}  // namespace

// ---- TrainState ---------------------------------------------------------------------------
TrainState::TrainState(const TrainConfig& c, Dataset d)
    : config(fit_to_data(c, d)),
      data(std::move(d)),
      schedule(make_schedule(config.schedule, config.T)),
      loss_weights(config.loss_weight == LossWeight::Uniform ? std::vector<double>{}
                                                              : ddpm::loss_weights(schedule, config.loss_weight, config.snr_gamma)),
      model(config.model, config.seed),
      adam(model.num_parameters(), DType::F32),
      ema(model.flat_parameters(), config.ema_decay),
      data_gen(stream(config.seed, 1)),
      noise_gen(stream(config.seed, 2)),
      dropout_gen(stream(config.seed, 3)) {}

double TrainState::update(double lr) {
    double grad_norm = nn::clip_grad_norm(model.flat_grads(), config.clip);
    if (!std::isfinite(grad_norm)) return grad_norm;
    adam.step(model.flat_parameters(), model.flat_grads(), lr);
    if (config.ema_gamma > 0) ema.decay = nn::power_ema_decay(step + 1, config.ema_gamma);
    ema.update(model.flat_parameters());
    if (posthoc.on()) posthoc.update(model.flat_parameters(), step + 1);
    step++;
    return grad_norm;
}

void TrainState::save(const std::string& path) const {
    nn::Checkpoint ck = nn::capture(model, &adam, &ema, step);
    ck.rngs = {{"data", data_gen}, {"noise", noise_gen}, {"dropout", dropout_gen}};
    DataCursor c = data.cursor();
    ck.metadata["data_cursor"] = cat(c.epoch, " ", c.pos, " ", c.perm_seed, " ", c.perm_offset);
    ck.metadata["train"] = config.str();
    ck.metadata["model"] = config.model.str();
    ck.metadata["steps"] = std::to_string(config.steps);
    ck.metadata["schedule"] = schedule_name(config.schedule);
    ck.metadata["T"] = std::to_string(config.T);
    if (config.loss_weight != LossWeight::Uniform) ck.metadata["loss_weight"] = cat("min-snr:", config.snr_gamma);  // absent: uniform
    if (posthoc.on()) {  // avg.<i>: post-hoc EMA's averages, of the gammas listed
        std::string gammas;
        for (size_t i = 0; i < posthoc.emas.size(); i++) {
            ck.averages.push_back(model.views(posthoc.emas[i].shadow));
            gammas += cat(i ? " " : "", posthoc.gammas[i]);
        }
        ck.metadata["posthoc_ema_gammas"] = gammas;
    }
    nn::save_checkpoint(path, ck);
}

void TrainState::load(const std::string& path) {
    nn::Checkpoint ck = nn::load_checkpoint(path);
    if (meta_model(ck) != config.model)
        fail(path, ": the checkpoint's model is '", ck.meta("model"), "', the flags ask for '", config.model.str(), "' (use another --out)");
    ScheduleKind kind = meta_schedule(ck);
    int64_t T = meta_integer(ck, "T", 2, kMaxT);
    if (kind != config.schedule || T != config.T)
        fail(path, ": the checkpoint was trained with the ", schedule_name(kind), " schedule and T = ", T, ", the flags ask for ",
             schedule_name(config.schedule), " and T = ", config.T, " (use another --out)");
    int64_t sized = meta_integer(ck, "steps", 0, std::numeric_limits<int64_t>::max());
    DataCursor cursor = meta_cursor(ck);
    if (ck.step < 0) fail(path, ": \"step\" is ", ck.step, ", expected a count of updates (>= 0)");
    Philox dg = meta_rng(ck, "data"), ng = meta_rng(ck, "noise"), pg = meta_rng(ck, "dropout");
    try {
        data.set_cursor(cursor);  // checked against this data set before anything else is restored
    } catch (const Error& e) {
        fail(path, ": metadata 'data_cursor' does not fit ", config.data_dir, " (", data.size(), " images): ", e.what());
    }
    try {
        nn::restore(ck, model, &adam, &ema);
    } catch (const Error& e) {
        fail(path, ": ", e.what());
    }
    posthoc_missing = false;
    if (posthoc.on()) {  // the averages must be the same ones (gammas, count) to continue
        const auto it = ck.metadata.find("posthoc_ema_gammas");
        std::string gammas;
        for (size_t i = 0; i < posthoc.gammas.size(); i++) gammas += cat(i ? " " : "", posthoc.gammas[i]);
        if (ck.averages.empty() || it == ck.metadata.end()) {
            posthoc_missing = ck.step > 0;  // a run written without them cannot start them mid-way
            if (posthoc_missing) posthoc = {};
        } else if (it->second != gammas || ck.averages.size() != posthoc.emas.size()) {
            fail(path, ": metadata 'posthoc_ema_gammas' is '", it->second, "' with ", ck.averages.size(), " averages, expected '", gammas, "'");
        } else {
            for (size_t i = 0; i < posthoc.emas.size(); i++) try {
                    nn::load_named(model.views(posthoc.emas[i].shadow), ck.averages[i], cat("avg.", i));
                } catch (const Error& e) {
                    fail(path, ": ", e.what());
                }
        }
    }
    data_gen = dg;
    noise_gen = ng;
    dropout_gen = pg;
    step = ck.step;
    if (config.steps == 0) config.steps = sized;  // the count the run was sized to (0: not yet)
}

Tensor TrainState::sample_ema(int64_t n, const Sampler& sampler) {
    if (!ema_model_) {
        ema_model_ = std::make_unique<nn::UNet>(config.model, config.seed);
        ema_model_->eval();
    }
    ema_model_->flat_parameters().copy_from(ema.shadow);
    Philox gen(config.seed + 12345);  // the same noise every time
    std::vector<int64_t> labels;      // class-conditional: the classes in turn, at the default guidance
    for (int64_t i = 0; i < n && config.model.num_classes > 0; i++) labels.push_back(i % config.model.num_classes);
    return sample(schedule, eps_model(*ema_model_, labels, labels.empty() ? 0 : kDefaultGuidance), {n, 1, data.rows(), data.cols()}, sampler,
                  gen);
}

// ---- StepBudget ---------------------------------------------------------------------------
StepBudget::StepBudget(int64_t steps, double budget_seconds, double seconds_before, int64_t start_step, bool hard_limit)
    : steps_(steps > 0 ? steps : kUnsized), start_(start_step), budget_(budget_seconds), before_(seconds_before),
      sizing_(steps == 0), hard_limit_(hard_limit) {
    if (steps < 0) fail("StepBudget: steps must be 0 (size to the budget) or positive, got ", steps);
    if (sizing_ && !(budget_seconds > 0)) fail("StepBudget: sizing a run needs a positive time budget, got ", budget_seconds, " s");
}

void StepBudget::fit(int64_t step, double seconds, double per_step) {
    double left = budget_ * 0.96 - before_ - seconds;
    pace_ = std::max(per_step, 1e-9);
    steps_ = step + std::max<int64_t>(0, int64_t(left / pace_));
}

bool StepBudget::after_step(int64_t step, double seconds) {
    if (!sizing_) return false;
    const int64_t done = step - start_;
    const double training = seconds - excluded_;  // the pace counts training time only
    if (!sized() && out_of_time(seconds)) {  // a machine so slow that the budget ran out before the probe did:
        pace_ = training / double(std::max<int64_t>(done, 1));
        steps_ = step;  // the run is the steps it took, and ends as one that reached its count
        return true;
    }
    if (done == kWarm) probe_start_ = training;
    if (done == kWarm + kProbe) {
        fit(step, seconds, (training - probe_start_) / double(kProbe));
        refine_start_ = training;
        return true;
    }
    if (done == kRefine && step < steps_) {
        fit(step, seconds, (training - refine_start_) / double(kRefine - kWarm - kProbe));
        return true;
    }
    return false;
}

bool StepBudget::out_of_time(double seconds) const { return hard_limit_ && budget_ > 0 && before_ + seconds > budget_; }

// ---- RunFolder ----------------------------------------------------------------------------
RunFolder::RunFolder(std::string dir, const nn::Module& model, int64_t grad_norms_every)
    : grad_norms(model), dir_(std::move(dir)), grad_norms_every_(grad_norms_every) {
    if (grad_norms_every < 0) fail("RunFolder: grad_norms_every must not be negative, got ", grad_norms_every);
    make_dirs(dir_);
}

bool RunFolder::has_checkpoint() const { return file_exists(checkpoint()); }

void RunFolder::resume(int64_t step) {
    loss_log.read_csv(dir_ + "/loss.csv", step);
    if (grad_norms_every_ > 0) grad_norms.read_csv(dir_ + "/grad_norms.csv", step);
    eval_log.read_csv(dir_ + "/eval.csv", step);
    seconds_before_ = loss_log.rows.empty() ? 0 : loss_log.rows.back().seconds;
}

void RunFolder::record_grad_norms(int64_t step, const Tensor& flat_grads) {
    if (grad_norms_every_ > 0 && step % grad_norms_every_ == 0) grad_norms.record(step, flat_grads);
}

void RunFolder::save(const TrainState& state) {
    try {  // each file is replaced atomically, so a failed write leaves the one before it whole
        state.save(checkpoint());
        loss_log.write_csv(dir_ + "/loss.csv");
        loss_log.write_svg(dir_ + "/loss.svg", cat("DDPM training loss (", state.config.data_dir, ")"));
        if (grad_norms_every_ > 0) {
            grad_norms.write_csv(dir_ + "/grad_norms.csv");
            grad_norms.write_svg(dir_ + "/grad_norms.svg", "largest gradient norms per parameter tensor, before clipping");
        }
    } catch (const Error& e) {
        fail("train: could not save step ", state.step, ": ", e.what(), ". The files already in ", dir_, " are as they were (",
             has_checkpoint() ? "the last checkpoint is intact" : "no checkpoint yet", ")");
    }
}

void RunFolder::write_samples(const Tensor& x, int64_t step) const {
    int nrow = int(std::ceil(std::sqrt(double(x.dim(0)))));
    GridLabels labels{cat("step ", step), {}};  // the picture says when it was drawn
    write_png_grid(dir_ + "/samples.png", x, nrow, 2, labels);
    char name[64];
    std::snprintf(name, sizeof name, "/samples_%06lld.png", (long long)step);
    write_png_grid(dir_ + name, x, nrow, 2, labels);
}

void RunFolder::record_eval(int64_t step, const RulerMetrics& m) {
    eval_log.add({step, m.n, m.fid_mean, m.fid_sd, m.fid_min, m.fid_max, m.kid_mean, m.kid_se, m.precision, m.recall, m.class_entropy,
                  m.confidence});
    eval_log.write_csv(dir_ + "/eval.csv");
    eval_log.write_svg(dir_ + "/eval", cat("sample quality during training (", m.n, " samples against ", m.n_reference, " test images)"));
}

// ---- Trainer ------------------------------------------------------------------------------
namespace {

std::atomic<bool> g_sigint{false};
extern "C" void on_sigint(int) {
    g_sigint = true;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

// Ctrl-C handled while it lives: g_sigint is set, and the handler before it comes back after.
struct SigintScope {
    using Handler = void (*)(int);
    Handler before;
    SigintScope() : before((g_sigint = false, std::signal(SIGINT, on_sigint))) {}
    ~SigintScope() { std::signal(SIGINT, before == SIG_ERR ? SIG_DFL : before); }
};

double now_seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string printed(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

RunConfig validated(RunConfig c) {
    c.validate();
    return c;
}

}  // namespace

Trainer::Trainer(RunConfig c, TrainEvents events, DataParallel* parallel)
    : events_(std::move(events)),
      parallel_(parallel),
      config(validated(std::move(c))),
      state((set_detect_anomaly(config.detect_anomaly), config.train), Dataset(config.train.data_dir)),
      folder(config.out, state.model, config.grad_norms_every),
      start_step(resume_or_refuse()),
      budget(state.config.steps, config.minutes * 60, folder.seconds_before(), start_step, config.minutes_limit) {
    if (config.eval_every == 0 || !lead()) return;  // data-parallel: rank 0 evaluates
    const std::string& dir = config.train.data_dir;
    ruler = std::make_unique<Ruler>(load_or_train_ruler(dir, state.data, Dataset(dir, "test"), config.eval_n, events_.judge_progress));
    std::string judges;
    for (const Judge& j : ruler->judges) judges += cat(judges.empty() ? "" : ", ", j.name, " ", printed("%.2f", 100 * j.test_accuracy), "%");
    note(cat("eval: every ", config.eval_every, " steps, ", config.eval_n, " samples (", config.eval_sampler().str(), ", ",
             config.eval_sampler().cost(), ") against ", ruler->first().reference.features.dim(0), " test images, by the ruler's ",
             ruler->judges.size(), " judges (test accuracy: ", judges, ")"));
}

Trainer::~Trainer() = default;

int64_t Trainer::resume_or_refuse() {
    // what an earlier run killed mid-write (kill -9, power loss) left behind
    for (const std::string& d : {config.out, snapshot_dir(config.out)})
        for (const std::string& name : lead() ? remove_stale_temporaries(d) : std::vector<std::string>{})
            note(cat("removed ", d, "/", name, ", a temporary file left by a run that was killed while writing"));
    if (config.ema_snapshot_every > 0) state.posthoc.start(state.model.flat_parameters(), posthoc_sigma_rels());
    if (!folder.has_checkpoint()) return state.step;
    if (!config.resume)  // never replace what another run made
        fail("train: ", folder.checkpoint(), " exists; --resume continues that run, or give another --out (or delete the folder) to start over");
    state.load(folder.checkpoint());
    if (state.posthoc_missing)
        note(cat("post-hoc EMA: ", folder.checkpoint(), " holds no post-hoc EMA averages (written before them, or with --ema-snapshot-every 0); "
                 "no snapshots for this run"));
    if (const std::string csv = config.out + "/eval.csv"; EvalLog::single_judge_csv(csv)) {  // before the ruler: kept aside
        const std::string kept = config.out + "/eval_single_judge.csv";
        if (std::rename(csv.c_str(), kept.c_str()) != 0) fail("train: could not rename ", csv, " to ", kept);
        note(cat(csv, " held the single judge's scores of before the ruler; kept as ", kept, ", and eval.csv starts anew"));
    }
    folder.resume(state.step);
    note(cat("resumed ", folder.checkpoint(), " at step ", state.step));
    return state.step;
}

void Trainer::note(const std::string& line) const {
    if (events_.note) events_.note(line);
}

bool Trainer::lead() const { return !parallel_ || parallel_->lead(); }

double Trainer::seconds() const { return now_seconds() - session_start_; }

double Trainer::images_per_second() const {
    return double(state.config.batch) * double(state.step - start_step) / std::max(seconds(), 1e-9);
}

void Trainer::checkpoint() {
    if (parallel_) parallel_->check_in_step(*this);  // the ranks' parameters have stayed the same
    if (!lead()) return;
    folder.save(state);
    folder.write_samples(state.sample_ema(config.samples, config.grid_sampler()), state.step);
    try {
        write_run_report(config.out);
    } catch (const Error& e) {  // the checkpoint is saved; a page that cannot be written must not stop the run
        note(cat("train: report.html not written: ", e.what()));
    }
}

void Trainer::snapshot() {
    const double t0 = now_seconds();
    int64_t bytes = 0;
    try {
        bytes = write_ema_snapshots(config.out, state.model, state.posthoc, state.step);
    } catch (const Error& e) {
        fail("train: could not write the post-hoc EMA snapshots of step ", state.step, ": ", e.what());
    }
    if (snapshots_written_++ == 0)  // what they cost, once
        note(cat("post-hoc EMA: ", state.posthoc.emas.size(), " snapshots of ", bytes / int64_t(state.posthoc.emas.size()), " bytes into ",
                 snapshot_dir(config.out), " in ", printed("%.3f", now_seconds() - t0), " s, every ", config.ema_snapshot_every, " steps"));
}

void Trainer::evaluate() {
    const double t0 = seconds();
    folder.record_eval(state.step, ruler->score(state.sample_ema(config.eval_n, config.eval_sampler())));
    budget.exclude(seconds() - t0);  // the pace that sizes the run counts training alone
}

// A step whose loss or gradient is not finite is not applied. The same step is run again with
// anomaly detection to name the op that made the first NaN or Inf.
void Trainer::nonfinite_step(const EpsModel& model, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps, Philox dropout_gen) {
    std::string op = "the step ran finite when repeated with anomaly detection";
    set_detect_anomaly(true);
    try {
        state.model.zero_grad();
        training_loss(state.schedule, model, x0, t, eps, &dropout_gen, state.loss_weights).backward();
    } catch (const Error& e) {
        op = e.what();
    }
    set_detect_anomaly(config.detect_anomaly);
    std::string what = cat("train: step ", state.step + 1, " has a non-finite loss or gradient (", op, "); it was not applied");
    skipped++;
    if (++skipped_in_a_row_ > config.skip_nonfinite)
        fail(what, ", and the run stops: the last checkpoint is kept (", folder.has_checkpoint() ? folder.checkpoint() : "none written yet",
             "). Try a lower --lr, or --skip-nonfinite N to skip such steps");
    note(cat(what, "; skipped (", skipped_in_a_row_, " in a row)"));
}

Trainer::End Trainer::run() {
    SigintScope sigint;
    bool agreed_stop = false;  // data-parallel: any rank's stop, agreed after each step
    auto stopping = [&] { return parallel_ ? agreed_stop : stop_ || g_sigint; };
    if (parallel_) parallel_->start(*this);  // the same flags and checkpoint; rank 0's weights
    session_start_ = now_seconds();
    const TrainConfig& cfg = state.config;
    const bool conditional = cfg.model.num_classes > 0;
    state.model.train();
    bool timed_out = false;
    while (state.step < budget.steps() && !stopping() && !timed_out) {
        std::vector<int64_t> labels;                                          // class-conditional: c, or the null label
        Tensor x0 = state.data.next_batch(int(cfg.batch), state.data_gen, conditional ? &labels : nullptr);  // x0 ~ q(x0), (B, 1, H, W) in [-1, 1]
        std::vector<int64_t> t = randint(cfg.batch, cfg.T, state.noise_gen);  // t ~ U{0..T-1}
        Tensor eps = randn(x0.shape(), state.noise_gen);                      // eps ~ N(0, I)
        if (conditional) labels = drop_labels(labels, cfg.p_uncond, state.model.null_label(), state.noise_gen);
        Philox* dropout_gen = &state.dropout_gen;
        Philox share_gen;
        if (parallel_) {  // data-parallel: this rank's share of the global batch (ddpm/parallel.h)
            const int r = parallel_->rank(), n = parallel_->size();
            x0 = share_of(x0, r, n), t = share_of(t, r, n), eps = share_of(eps, r, n), labels = share_of(labels, r, n);
            share_gen = share_dropout(state.dropout_gen, r);
            dropout_gen = &share_gen;
        }
        const EpsModel model = eps_model(state.model, labels);
        state.model.zero_grad();
        Philox dropout_before = *dropout_gen;
        Variable loss = training_loss(state.schedule, model, x0, t, eps, dropout_gen, state.loss_weights);  // ||eps - eps_theta(x_t, t[, c])||^2
        loss.backward();
        double loss_value = loss.value().item();
        if (parallel_) {  // the global batch's loss and gradient: one all-reduce of the flat gradient
            advance_dropout(state.dropout_gen, share_gen, parallel_->rank(), parallel_->size());
            loss_value = parallel_->average(state.model.flat_grads(), loss_value);
        }
        folder.record_grad_norms(state.step + 1, state.model.flat_grads());  // before clipping
        const double lr = cfg.lr.at(state.step + 1, budget.steps());
        const double grad_norm = std::isfinite(loss_value) ? state.update(lr) : NAN;  // clip, Adam, EMA; step + 1
        if (!std::isfinite(grad_norm)) {                                      // not applied (TrainState::update)
            nonfinite_step(model, x0, t, eps, dropout_before);
            if (parallel_) agreed_stop = parallel_->agree({budget.steps(), false, stop_ || g_sigint}).stop;
            continue;
        }
        skipped_in_a_row_ = 0;
        const double now = seconds();
        folder.log({state.step, loss_value, grad_norm, lr, folder.seconds_before() + now});
        bool sized = budget.after_step(state.step, now);
        timed_out = budget.out_of_time(now);
        if (parallel_) {  // rank 0's clock sizes and stops the run; any rank's Ctrl-C stops it
            const DataParallel::Decisions d = parallel_->agree({budget.steps(), timed_out, stop_ || g_sigint});
            budget.agree(d.steps), timed_out = d.timed_out, agreed_stop = d.stop;
        }
        if (sized) {  // train.steps = 0: the count that fits, from the pace so far
            state.config.steps = budget.steps();
            if (events_.sized) events_.sized(*this, state.step - start_step == StepBudget::kWarm + StepBudget::kProbe);
            note(cat("--steps 0: ", printed("%.3g", budget.seconds_per_step()), " s per step, so ", budget.steps(), " steps fit in ",
                     config.minutes, " minutes"));
        }
        if (events_.step) events_.step(*this);
        // every rank keeps the averages (the same on each); rank 0 alone writes them
        if (lead() && state.posthoc.on() && (state.step % config.ema_snapshot_every == 0 || state.step == budget.steps() || timed_out))
            snapshot();
        if (state.step % config.every == 0 || state.step == budget.steps() || timed_out) checkpoint();
        if (ruler && state.step % config.eval_every == 0 && !timed_out && !stopping()) evaluate();
    }
    if (stopping()) {
        if (lead()) folder.save(state);
        return End::Interrupted;
    }
    if (state.step == start_step) return End::NothingToTrain;
    return timed_out && state.step < budget.steps() ? End::OutOfTime : End::Done;
}

// ---- DiffusionModel -----------------------------------------------------------------------
DiffusionModel load_model(const std::string& path, Weights weights, double dropout) {
    nn::Checkpoint ck = nn::load_checkpoint(path);
    nn::UNetConfig cfg = meta_model(ck);
    if (dropout >= 0) cfg.dropout = dropout;
    DiffusionModel m;
    m.source = path;
    m.schedule = make_schedule(meta_schedule(ck), meta_integer(ck, "T", 2, kMaxT));
    try {
        m.net = std::make_unique<nn::UNet>(cfg);
    } catch (const Error& e) {
        fail(path, ": metadata 'model': ", e.what());
    }
    m.ema = weights == Weights::Ema || (weights == Weights::EmaIfPresent && !ck.ema.empty());
    m.step = ck.step;
    if (ck.metadata.count("loss_weight")) {  // "uniform" or "min-snr:GAMMA"
        const std::string& text = ck.meta("loss_weight");
        double gamma = 0;
        const size_t colon = text.find(':');
        auto [end, ec] = std::from_chars(text.data() + std::min(colon + 1, text.size()), text.data() + text.size(), gamma);
        if (text != "uniform" && (text.substr(0, colon) != "min-snr" || ec != std::errc() || end != text.data() + text.size() || !(gamma > 0)))
            fail(path, ": metadata 'loss_weight' is '", text, "', expected 'uniform' or 'min-snr:GAMMA' with GAMMA > 0");
        m.loss_weight = text;
        if (text != "uniform") m.loss_weights = loss_weights(m.schedule, LossWeight::MinSnr, gamma);
    }
    nn::load_named(m.net->state_dict(), ck.weights(m.ema), path);
    m.net->eval();
    return m;
}

PostHocResult apply_posthoc_ema(DiffusionModel& model, double sigma_rel) {
    const size_t slash = model.source.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : model.source.substr(0, slash);
    PostHocResult r = load_posthoc_ema(dir, model.step, sigma_rel, *model.net);
    model.ema = true;
    return r;
}

DiffusionModel fresh_model(const nn::UNetConfig& config, ScheduleKind schedule, int64_t T, uint64_t seed) {
    DiffusionModel m;
    m.source = cat("fresh init, seed ", seed);
    m.net = std::make_unique<nn::UNet>(config, seed);
    m.schedule = make_schedule(schedule, T);
    return m;
}

Tensor draw_samples(const DiffusionModel& model, int64_t n, const Sampler& sampler, int64_t batch, Philox& gen,
                    const ProgressFn& on_batch, const std::vector<int64_t>& labels, double guidance, bool clip_x0) {
    if (n < 1 || batch < 1) fail("draw_samples: expected n and batch >= 1, got ", n, ", ", batch);
    sampler.validate(model.schedule.T);
    if (!labels.empty() && int64_t(labels.size()) != n) fail("draw_samples: ", labels.size(), " labels for ", n, " images");
    const nn::UNetConfig& cfg = model.net->config();
    const int64_t R = cfg.resolution;
    Tensor all({n, cfg.in_ch, R, R});  // (N, C, R, R)
    for (int64_t done = 0; done < n; done += batch) {
        int64_t b = std::min(batch, n - done);
        Shape shape{b, cfg.in_ch, R, R};
        std::vector<int64_t> c;  // this batch's labels
        if (!labels.empty()) c.assign(labels.begin() + done, labels.begin() + done + b);
        EpsModel eps = eps_model(*model.net, c, guidance);
        Tensor x = sample(model.schedule, eps, shape, sampler, gen, clip_x0);
        all.rows(done, b).copy_from(x.to(DType::F32));
        if (on_batch) on_batch(done + b, n);
    }
    // A sample that is not finite (a model whose weights went bad, a guidance weight past float's
    // range without clip_x0) is an error here, not an image a program writes and calls done.
    if (int64_t bad = -1; !all_finite(all, &bad))
        fail("draw_samples: image ", bad / (cfg.in_ch * R * R), " of ", n, " holds NaN or Inf (", sampler.str(),
             labels.empty() ? "" : cat(", guidance ", guidance).c_str(), clip_x0 ? "" : ", x_0 unclipped", ")");
    return all;
}

}  // namespace dl::ddpm
