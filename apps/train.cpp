// build/train: trains the DDPM U-Net on an IDX image set (MNIST by default), Algorithm 1 of
// Ho et al. 2020, and writes into --out: checkpoint.safetensors (atomically), a PNG grid of
// samples from the EMA weights, and the loss curve as CSV and SVG. Ctrl-C saves a checkpoint
// before it exits; --resume continues from the folder's checkpoint bit for bit.
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <omp.h>

#include "apps/cli.h"
#include "autograd/anomaly.h"
#include "ddpm/report/report.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#include "tensor/ops.h"

using namespace dl;

static std::atomic<bool> g_interrupted{false};
static void on_sigint(int) {
    g_interrupted = true;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "train", "trains the DDPM U-Net on one-channel IDX images (MNIST by default)");
    ddpm::TrainConfig cfg;
    cfg.data_dir = args.str("--data", "data/mnist", "folder with train-images-idx3-ubyte");
    std::string out = args.str("--out", "runs/mnist", "output folder: checkpoint, samples, loss curve");
    cfg.steps = args.integer("--steps", 0, "total training steps; 0: as many as fit in --minutes, measured on the first steps");
    cfg.batch = args.integer("--batch", 64, "images per step");
    cfg.lr.base = args.real("--lr", 2e-3, "Adam learning rate after warmup");
    cfg.lr.warmup = args.integer("--warmup", 100, "linear learning-rate warmup steps");
    std::string decay = args.str("--lr-decay", "cosine", "after warmup: 'cosine' (to 0 at --steps) or 'none'");
    std::string schedule = args.str("--schedule", "linear", "beta schedule: linear or cosine");
    cfg.T = args.integer("--T", 1000, "diffusion steps");
    // The defaults of the model, the learning rate and the EMA are the measured 30-minute recipe
    // (README, "The 30-minute recipe"); the reference U-Net is --ch 32 --res-blocks 2.
    cfg.model.ch = args.integer("--ch", 16, "U-Net base channels (the reference's: 32)");
    cfg.model.num_res_blocks = args.integer("--res-blocks", 1, "ResBlocks per resolution on the way down (one more on the way up; the reference's: 2)");
    cfg.model.dropout = args.real("--dropout", 0.0, "dropout in the ResBlocks (the reference's 0.1 slows a 30-minute run)");
    cfg.model.num_classes = args.integer("--classes", 0, "class-conditional with this many classes, labels from train-labels-idx1-ubyte (0: unconditional)");
    cfg.p_uncond = args.real("--p-uncond", 0.1, "with --classes: how often a label is replaced by the null label (classifier-free guidance)");
    cfg.ema_decay = args.real("--ema", 0.995, "a fixed EMA decay of the parameters, instead of the power-function EMA");
    cfg.ema_gamma = args.real("--ema-gamma", 6.94, "power-function EMA (Karras et al. 2024), decay (1 - 1/step)^(gamma + 1); 0: the fixed --ema");
    if (args.given("--ema") && !args.given("--ema-gamma")) cfg.ema_gamma = 0;  // --ema alone asks for the fixed decay
    std::string loss_weight = args.str("--loss-weight", "uniform", "per-timestep loss weight: 'uniform' (Algorithm 1) or 'min-snr' (Hang et al. 2023)");
    cfg.snr_gamma = args.real("--snr-gamma", 5, "min-snr's gamma: weight min(SNR_t, gamma) / SNR_t");
    cfg.clip = args.real("--clip", 1.0, "global gradient-norm clipping");
    cfg.seed = uint64_t(args.integer("--seed", 0, "seed of the initial weights and every random stream"));
    int64_t threads = args.integer("--threads", 0, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
    std::string prec = args.str("--precision", "winograd", cli::kPrecisionHelp);
    int64_t every = args.integer("--every", 500, "write checkpoint, samples and curves every N steps");
    int64_t n_samples = args.integer("--samples", 64, "images in the sample grid");
    int64_t ddim_steps = args.integer("--ddim-steps", 50, "DDIM steps for the sample grid");
    double minutes = args.real("--minutes", 30, "time budget that --steps 0 sizes the run to; given explicitly, it also stops (and saves) a longer run; 0: none");
    bool resume = args.flag("--resume", "continue from <out>/checkpoint.safetensors when it exists");
    bool anomaly = args.flag("--detect-anomaly", "check every op's output and gradient for NaN/Inf");
    int64_t skip_limit = args.integer("--skip-nonfinite", 0, "skip up to N steps in a row whose loss or gradient is not finite (0: stop at the first)");
    int64_t grad_norms_every = args.integer("--grad-norms-every", 50, "log each parameter tensor's gradient norm every N steps (grad_norms.csv/.svg; 0: off)");
    int64_t eval_every = args.integer("--eval-every", 0, "FID, precision and recall of --eval-n samples every N steps (eval.csv/.svg; 0: off)");
    int64_t eval_n = args.integer("--eval-n", 256, "samples per --eval-every evaluation (DDIM with --eval-ddim-steps)");
    int64_t eval_ddim = args.integer("--eval-ddim-steps", 20, "DDIM steps of the --eval-every samples");
    args.done();

    cli::set_threads("train", threads);
    cli::set_precision("train", prec);
    set_flush_denormals();
    if (decay != "cosine" && decay != "none") fail("train: --lr-decay expects 'cosine' or 'none', got '", decay, "'");
    if (schedule != "linear" && schedule != "cosine") fail("train: --schedule expects 'linear' or 'cosine', got '", schedule, "'");
    cfg.lr.decay = nn::parse_lr_decay(decay);
    cfg.schedule = ddpm::parse_schedule(schedule);
    if (loss_weight != "uniform" && loss_weight != "min-snr") fail("train: --loss-weight expects 'uniform' or 'min-snr', got '", loss_weight, "'");
    cfg.loss_weight = ddpm::parse_loss_weight(loss_weight);
    if (!(cfg.snr_gamma > 0) || !(cfg.ema_gamma >= 0) || !std::isfinite(cfg.ema_gamma))
        fail("train: --snr-gamma must be positive and --ema-gamma finite and not negative, got ", cfg.snr_gamma, ", ", cfg.ema_gamma);
    if (cfg.model.num_res_blocks < 1 || cfg.model.num_res_blocks > 4) fail("train: --res-blocks must be in [1, 4], got ", cfg.model.num_res_blocks);
    if (cfg.batch < 1 || cfg.steps < 0 || every < 1) fail("train: --batch and --every must be positive, --steps not negative");
    if (cfg.steps == 0 && minutes <= 0) fail("train: --steps 0 sizes the run to --minutes, which must then be positive");
    if (!(cfg.lr.base > 0) || !(cfg.clip > 0) || cfg.lr.warmup < 0)
        fail("train: --lr and --clip must be positive and --warmup not negative, got ", cfg.lr.base, ", ", cfg.clip, ", ", cfg.lr.warmup);
    if (!(cfg.ema_decay >= 0 && cfg.ema_decay < 1)) fail("train: --ema must be in [0, 1), got ", cfg.ema_decay);
    if (cfg.model.num_classes < 0 || cfg.model.num_classes > 255)
        fail("train: --classes must be 0 (unconditional) or a class count in [1, 255] (IDX labels are bytes), got ", cfg.model.num_classes);
    if (!(cfg.p_uncond >= 0 && cfg.p_uncond < 1)) fail("train: --p-uncond must be in [0, 1), got ", cfg.p_uncond);
    if (skip_limit < 0) fail("train: --skip-nonfinite must not be negative, got ", skip_limit);
    if (eval_every < 0 || eval_n < 4 || eval_ddim < 1 || eval_ddim > cfg.T)
        fail("train: --eval-every must not be negative, --eval-n at least 4, --eval-ddim-steps in [1, --T]; got ", eval_every, ", ", eval_n, ", ", eval_ddim);
    if (n_samples < 1 || ddim_steps < 1 || ddim_steps > cfg.T || grad_norms_every < 0)
        fail("train: --samples must be positive, --ddim-steps in [1, --T], --grad-norms-every not negative; got ", n_samples, ", ",
             ddim_steps, ", ", grad_norms_every);
    set_detect_anomaly(anomaly);

    // ---- the run: fresh, or continued from its checkpoint ----
    ddpm::TrainState st(cfg, ddpm::Dataset(cfg.data_dir));
    ddpm::RunFolder run(out, st.model, grad_norms_every);
    if (!resume && run.has_checkpoint())  // never replace what another run made
        fail("train: ", run.checkpoint(), " exists; --resume continues that run, or give another --out (or delete the folder) to start over");
    if (resume && run.has_checkpoint()) {
        st.load(run.checkpoint());
        run.resume(st.step);
        std::printf("resumed %s at step %lld\n", run.checkpoint().c_str(), (long long)st.step);
    }
    std::unique_ptr<ddpm::Judge> judge;  // --eval-every: the classifier that scores samples (ddpm/eval/eval.h)
    if (eval_every > 0) {
        judge = std::make_unique<ddpm::Judge>(ddpm::load_or_train_judge(cfg.data_dir, st.data, ddpm::Dataset(cfg.data_dir, "test"), eval_n,
                                                                           cli::progress_callback("training the judge (once per data set)")));
        std::printf("eval: every %lld steps, %lld samples (DDIM %lld) against %lld test images, judge %s (test accuracy %.2f%%)\n",
                    (long long)eval_every, (long long)eval_n, (long long)eval_ddim, (long long)judge->reference.features.dim(0),
                    judge->cache.c_str(), 100 * judge->test_accuracy);
    }
    const int64_t start_step = st.step;
    ddpm::StepBudget budget(st.config.steps, minutes * 60, run.seconds_before(), start_step, args.given("--minutes"));
    std::printf("train: %lld images %lldx%lld from %s | U-Net %lld parameters (%s) | batch %lld, %s, lr %g (%s), %d threads, conv2d %s\n",
                (long long)st.data.size(), (long long)st.data.rows(), (long long)st.data.cols(), cfg.data_dir.c_str(),
                (long long)st.model.num_parameters(), st.config.model.str().c_str(), (long long)cfg.batch,
                budget.sized() ? cat(budget.steps(), " steps").c_str() : cat("steps to fit ", minutes, " minutes").c_str(), cfg.lr.base,
                nn::lr_decay_name(cfg.lr.decay), omp_get_max_threads(), precision_name(precision()));
    cli::Progress progress(budget.sized() ? budget.steps() : start_step + budget.kWarm + budget.kProbe, start_step);
    const auto session_start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start).count(); };
    auto checkpoint = [&] {
        run.save(st);
        run.write_samples(st.sample_ema(n_samples, ddim_steps), st.step);
        try {
            ddpm::write_run_report(out);
        } catch (const Error& e) {  // the checkpoint is saved; a page that cannot be written must not stop the run
            std::printf("%strain: report.html not written: %s\n", progress.tty() ? "\r\033[K" : "", e.what());
        }
    };
    // A step whose loss or gradient is not finite is not applied. The same step is run again with
    // anomaly detection to name the op that made the first NaN or Inf.
    int64_t skipped_in_a_row = 0, skipped = 0;
    auto nonfinite_step = [&](const ddpm::EpsModel& model, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps, Philox dropout_gen) {
        std::string op = "the step ran finite when repeated with anomaly detection";
        set_detect_anomaly(true);
        try {
            st.model.zero_grad();
            ddpm::training_loss(st.schedule, model, x0, t, eps, &dropout_gen, st.loss_weights).backward();
        } catch (const Error& e) {
            op = e.what();
        }
        set_detect_anomaly(anomaly);
        std::string what = cat("train: step ", st.step + 1, " has a non-finite loss or gradient (", op, "); it was not applied");
        skipped++;
        if (++skipped_in_a_row > skip_limit)
            fail(what, ", and the run stops: the last checkpoint is kept (", run.has_checkpoint() ? run.checkpoint() : "none written yet",
                 "). Try a lower --lr, or --skip-nonfinite N to skip such steps");
        std::printf("%s%s; skipped (%lld in a row)\n", progress.tty() ? "\r\033[K" : "", what.c_str(), (long long)skipped_in_a_row);
    };
    auto announce_steps = [&] {  // --steps 0: the count that fits, from the pace so far
        if (st.step - start_step == budget.kWarm + budget.kProbe) progress = cli::Progress(budget.steps(), st.step);  // the ETA counts from here
        else progress.set_total(budget.steps());
        std::printf("%s--steps 0: %.3g s per step, so %lld steps fit in %g minutes\n", progress.tty() ? "\r\033[K" : "",
                    budget.seconds_per_step(), (long long)budget.steps(), minutes);
    };
    auto evaluate = [&] {  // --eval-every: FID, precision, recall of samples from the EMA weights
        double t0 = seconds();
        run.record_eval(st.step, judge->score(st.sample_ema(eval_n, eval_ddim)));
        budget.exclude(seconds() - t0);
    };
    auto show_progress = [&](double now) {
        char fields[128];
        std::snprintf(fields, sizeof fields, "loss %.4f | %.1f img/s", run.smoothed_loss(), double(cfg.batch) * double(st.step - start_step) / std::max(now, 1e-9));
        progress.update(st.step, fields, st.step == budget.steps());
    };

    // ---- the training loop: Algorithm 1 (with Ho & Salimans 2022's label dropout when class-conditional) ----
    const bool conditional = cfg.model.num_classes > 0;
    std::signal(SIGINT, on_sigint);
    st.model.train();
    bool timed_out = false;
    while (st.step < budget.steps() && !g_interrupted && !timed_out) {
        std::vector<int64_t> labels;                                      // class-conditional: c, or the null label
        Tensor x0 = st.data.next_batch(int(cfg.batch), st.data_gen, conditional ? &labels : nullptr);  // x0 ~ q(x0), (B, 1, H, W) in [-1, 1]
        std::vector<int64_t> t = randint(cfg.batch, cfg.T, st.noise_gen);  // t ~ U{0..T-1}
        Tensor eps = randn(x0.shape(), st.noise_gen);                     // eps ~ N(0, I)
        if (conditional) labels = ddpm::drop_labels(labels, cfg.p_uncond, st.model.null_label(), st.noise_gen);
        const ddpm::EpsModel model = ddpm::eps_model(st.model, labels);
        st.model.zero_grad();
        Philox dropout_before = st.dropout_gen;
        Variable loss = ddpm::training_loss(st.schedule, model, x0, t, eps, &st.dropout_gen, st.loss_weights);  // ||eps - eps_theta(x_t, t[, c])||^2
        loss.backward();
        run.record_grad_norms(st.step + 1, st.model.flat_grads());        // before clipping
        double lr = cfg.lr.at(st.step + 1, budget.steps());
        double grad_norm = std::isfinite(loss.value().item()) ? st.update(lr) : NAN;  // clip, Adam, EMA; step + 1
        if (!std::isfinite(grad_norm)) {                                  // not applied (TrainState::update)
            nonfinite_step(model, x0, t, eps, dropout_before);
            continue;
        }
        skipped_in_a_row = 0;
        double now = seconds();
        run.log({st.step, loss.value().item(), grad_norm, lr, run.seconds_before() + now});
        if (budget.after_step(st.step, now)) {
            st.config.steps = budget.steps();
            announce_steps();
        }
        show_progress(now);
        timed_out = budget.out_of_time(now);
        if (st.step % every == 0 || st.step == budget.steps() || timed_out) checkpoint();
        if (judge && st.step % eval_every == 0 && !timed_out && !g_interrupted) evaluate();
    }
    progress.finish();

    if (st.step == start_step && !g_interrupted)
        std::printf("nothing to train: %s is at step %lld of %lld; --steps N (more) continues it, --out DIR starts a new run\n",
                    run.checkpoint().c_str(), (long long)st.step, (long long)budget.steps());
    if (g_interrupted) {
        run.save(st);
        std::printf("interrupted: saved %s at step %lld; `make train` (or --resume) continues\n", run.checkpoint().c_str(), (long long)st.step);
        return 130;
    }
    if (skipped) std::printf("skipped %lld steps with a non-finite loss or gradient (--skip-nonfinite)\n", (long long)skipped);
    if (timed_out && st.step < budget.steps())
        std::printf("stopped after %g minutes at step %lld of %lld\n", minutes, (long long)st.step, (long long)budget.steps());
    std::printf("done: %s, %s/samples.png, %s/report.html\n", run.checkpoint().c_str(), out.c_str(), out.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
