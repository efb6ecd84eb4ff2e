// The training run: state, checkpoint metadata, step budget, run folder (see trainer.h).
#include "ddpm/trainer.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "autograd/ops.h"
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
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), k);
    if (ec != std::errc() || end != text.data() + text.size() || k < 0 || k >= num_classes)
        fail(flag, " expects 'all' or a class in [0, ", num_classes, "), got '", text, "'");
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
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
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

// The largest T a checkpoint may ask for: the schedule holds a dozen doubles per step.
constexpr int64_t kMaxT = 1'000'000;

// "epoch pos perm_seed perm_offset": four unsigned integers, single spaces between them.
DataCursor meta_cursor(const nn::Checkpoint& ck) {
    const std::string& text = ck.meta("data_cursor");
    uint64_t v[4];
    const char *p = text.data(), *end = text.data() + text.size();
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++) {
        if (i > 0) ok = p < end && *p++ == ' ';
        auto r = std::from_chars(p, end, v[i]);
        ok = ok && r.ec == std::errc();
        p = r.ptr;
    }
    if (!ok || p != end) fail(ck.source, ": metadata 'data_cursor' is '", text, "', expected four unsigned integers");
    return {v[0], v[1], v[2], v[3]};
}

Philox meta_rng(const nn::Checkpoint& ck, const std::string& name) {
    auto it = ck.rngs.find(name);
    if (it == ck.rngs.end()) fail(ck.source, ": no random stream 'rng.", name, "' (not a checkpoint written by build/train?)");
    return it->second;
}

TrainConfig fit_to_data(TrainConfig c, const Dataset& data) {
    c.model = model_for_data(c.model, data, c.data_dir);
    if (int64_t K = c.model.num_classes; K > 0) {  // class-conditional: every image needs a label in [0, K)
        const std::string labels = c.data_dir + "/train-labels-idx1-ubyte";
        if (data.labels().empty()) fail("train: --classes ", K, " needs a label per image, and ", labels, " is missing");
        for (size_t i = 0; i < data.labels().size(); i++)
            if (data.labels()[i] >= K)
                fail(labels, ": label ", int(data.labels()[i]), " of image ", i, " is outside [0, ", K, ") (--classes ", K, ")");
        if (!(c.p_uncond >= 0 && c.p_uncond < 1)) fail("train: --p-uncond must be in [0, 1), got ", c.p_uncond);
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
    data_gen = dg;
    noise_gen = ng;
    dropout_gen = pg;
    step = ck.step;
    if (config.steps == 0) config.steps = sized;  // the count the run was sized to (0: not yet)
}

Tensor TrainState::sample_ema(int64_t n, int64_t ddim_steps) {
    if (!ema_model_) {
        ema_model_ = std::make_unique<nn::UNet>(config.model, config.seed);
        ema_model_->eval();
    }
    ema_model_->flat_parameters().copy_from(ema.shadow);
    Philox gen(config.seed + 12345);  // the same noise every time
    std::vector<int64_t> labels;      // class-conditional: the classes in turn, at the default guidance
    for (int64_t i = 0; i < n && config.model.num_classes > 0; i++) labels.push_back(i % config.model.num_classes);
    return ddim_sample(schedule, eps_model(*ema_model_, labels, labels.empty() ? 0 : kDefaultGuidance), {n, 1, data.rows(), data.cols()},
                       ddim_steps, 0.0, gen);
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
    : grad_norms(model), dir_(std::move(dir)), grad_norms_every_(grad_norms_every), smoothed_(NAN) {
    if (grad_norms_every < 0) fail("RunFolder: grad_norms_every must not be negative, got ", grad_norms_every);
    make_dirs(dir_);
}

bool RunFolder::has_checkpoint() const { return file_exists(checkpoint()); }

void RunFolder::resume(int64_t step) {
    loss_log.read_csv(dir_ + "/loss.csv", step);
    if (grad_norms_every_ > 0) grad_norms.read_csv(dir_ + "/grad_norms.csv", step);
    eval_log.read_csv(dir_ + "/eval.csv", step);
    smoothed_ = loss_log.rows.empty() ? NAN : loss_log.recent_loss(50);
    seconds_before_ = loss_log.rows.empty() ? 0 : loss_log.rows.back().seconds;
}

void RunFolder::log(const LogRow& row) {
    loss_log.add(row);
    smoothed_ = std::isnan(smoothed_) ? row.loss : 0.98 * smoothed_ + 0.02 * row.loss;
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

void RunFolder::record_eval(int64_t step, const SampleMetrics& m) {
    eval_log.add({step, m.n, m.fid, m.precision, m.recall, m.class_entropy, m.confidence});
    eval_log.write_csv(dir_ + "/eval.csv");
    eval_log.write_svg(dir_ + "/eval", cat("sample quality during training (", m.n, " samples against ", m.n_reference, " test images)"));
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

DiffusionModel fresh_model(const nn::UNetConfig& config, ScheduleKind schedule, int64_t T, uint64_t seed) {
    DiffusionModel m;
    m.source = cat("fresh init, seed ", seed);
    m.net = std::make_unique<nn::UNet>(config, seed);
    m.schedule = make_schedule(schedule, T);
    return m;
}

Tensor draw_samples(const DiffusionModel& model, int64_t n, int64_t ddim_steps, double eta, int64_t batch, Philox& gen,
                    const ProgressFn& on_batch, const std::vector<int64_t>& labels, double guidance, bool clip_x0) {
    if (n < 1 || batch < 1 || ddim_steps < 0) fail("draw_samples: expected n, batch >= 1 and ddim_steps >= 0, got ", n, ", ", batch, ", ", ddim_steps);
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
        Tensor x = ddim_steps > 0 ? ddim_sample(model.schedule, eps, shape, ddim_steps, eta, gen, clip_x0)
                                  : p_sample_loop(model.schedule, eps, shape, gen, clip_x0);
        all.rows(done, b).copy_from(x.to(DType::F32));
        if (on_batch) on_batch(done + b, n);
    }
    return all;
}

}  // namespace dl::ddpm
