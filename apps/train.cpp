// build/train: trains the DDPM U-Net on an IDX image set (MNIST by default), Algorithm 1 of
// Ho et al. 2020, and writes into --out: checkpoint.safetensors (atomically), a PNG grid of
// samples from the EMA weights, and the loss curve as CSV and SVG. Ctrl-C saves a checkpoint
// before it exits; --resume continues from the folder's checkpoint bit for bit.
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <chrono>
#include <limits>
#include <omp.h>

#include "apps/cli.h"
#include "autograd/ops.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/train_log.h"
#include "nn/checkpoint.h"
#include "nn/grad_norm_log.h"
#include "nn/unet.h"
#include "tensor/cpu.h"
#include "tensor/io.h"
#include "tensor/ops.h"
#include "tensor/png.h"

using namespace dl;

static std::atomic<bool> g_interrupted{false};
static void on_sigint(int) {
    g_interrupted = true;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

// Independent random streams from one seed: data order, timesteps and noise, dropout masks.
static Philox stream(uint64_t seed, uint64_t k) { return Philox(seed * 0x9E3779B97F4A7C15ull + k); }

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "train", "trains the DDPM U-Net on one-channel IDX images (MNIST by default)");
    std::string data_dir = args.str("--data", "data/mnist", "folder with train-images-idx3-ubyte");
    std::string out = args.str("--out", "runs/mnist", "output folder: checkpoint, samples, loss curve");
    int64_t steps = args.integer("--steps", 0, "total training steps; 0: as many as fit in --minutes, measured on the first steps");
    int64_t batch = args.integer("--batch", 64, "images per step");
    double lr = args.real("--lr", 1e-3, "Adam learning rate after warmup");
    int64_t warmup = args.integer("--warmup", 100, "linear learning-rate warmup steps");
    std::string decay = args.str("--lr-decay", "cosine", "after warmup: 'cosine' (to 0 at --steps) or 'none'");
    std::string schedule_name = args.str("--schedule", "linear", "beta schedule: linear or cosine");
    int64_t T = args.integer("--T", 1000, "diffusion steps");
    int64_t ch = args.integer("--ch", 32, "U-Net base channels");
    double dropout = args.real("--dropout", 0.0, "dropout in the ResBlocks (the reference's 0.1 slows a 30-minute run)");
    double ema_decay = args.real("--ema", 0.995, "EMA decay of the parameters");
    double clip = args.real("--clip", 1.0, "global gradient-norm clipping");
    int64_t seed = args.integer("--seed", 0, "seed of the initial weights and every random stream");
    int64_t threads = args.integer("--threads", 0, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
    int64_t every = args.integer("--every", 500, "write checkpoint, samples and curves every N steps");
    int64_t n_samples = args.integer("--samples", 64, "images in the sample grid");
    int64_t ddim_steps = args.integer("--ddim-steps", 50, "DDIM steps for the sample grid");
    double minutes = args.real("--minutes", 30, "time budget that --steps 0 sizes the run to; given explicitly, it also stops (and saves) a longer run; 0: none");
    bool resume = args.flag("--resume", "continue from <out>/checkpoint.safetensors when it exists");
    bool anomaly = args.flag("--detect-anomaly", "check every op's output and gradient for NaN/Inf");
    int64_t grad_norms_every = args.integer("--grad-norms-every", 50, "log each parameter tensor's gradient norm every N steps (grad_norms.csv/.svg; 0: off)");
    args.done();

    cli::set_threads("train", threads);
    set_flush_denormals();
    if (decay != "cosine" && decay != "none") fail("train: --lr-decay expects 'cosine' or 'none', got '", decay, "'");
    if (batch < 1 || steps < 0 || every < 1) fail("train: --batch and --every must be positive, --steps not negative");
    if (steps == 0 && minutes <= 0) fail("train: --steps 0 sizes the run to --minutes, which must then be positive");
    if (!(lr > 0) || !(clip > 0) || warmup < 0) fail("train: --lr and --clip must be positive and --warmup not negative, got ", lr, ", ", clip, ", ", warmup);
    if (!(ema_decay >= 0 && ema_decay < 1)) fail("train: --ema must be in [0, 1), got ", ema_decay);
    if (n_samples < 1 || ddim_steps < 1 || ddim_steps > T || grad_norms_every < 0)
        fail("train: --samples must be positive, --ddim-steps in [1, --T], --grad-norms-every not negative; got ", n_samples, ", ", ddim_steps, ", ",
             grad_norms_every);
    set_detect_anomaly(anomaly);
    make_dirs(out);
    const std::string ckpt_path = out + "/checkpoint.safetensors";

    // ---- data, schedule, model, optimizer ----
    ddpm::Dataset data(data_dir);
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::parse_schedule(schedule_name), T);
    nn::UNetConfig cfg;
    cfg.ch = ch;
    cfg.dropout = dropout;
    cfg.resolution = data.rows();
    cfg.attn_res = {data.rows() / 4};  // attention at the lowest resolution, as 7 for 28
    if (data.rows() != data.cols() || data.rows() % 4) fail(data_dir, ": images are ", data.rows(), "x", data.cols(), "; the U-Net needs square images with a side divisible by 4");
    nn::UNet model(cfg, uint64_t(seed));
    nn::Adam adam(model.num_parameters(), DType::F32);
    nn::Ema ema(model.flat_parameters(), ema_decay);
    Philox data_gen = stream(uint64_t(seed), 1), noise_gen = stream(uint64_t(seed), 2), dropout_gen = stream(uint64_t(seed), 3);
    ddpm::TrainLog log;
    nn::GradNormLog grad_log(model);  // per-parameter gradient norms every grad_norms_every steps
    int64_t step = 0;
    double seconds_before = 0;  // wall time of earlier sessions of this run

    // ---- resume ----
    if (resume && file_exists(ckpt_path)) {
        nn::Checkpoint ck = nn::load_checkpoint(ckpt_path);
        std::string model_str = ck.meta("model");
        if (nn::UNetConfig::parse(model_str) != cfg)
            fail(ckpt_path, ": the checkpoint's model is '", model_str, "', the flags ask for '", cfg.str(), "' (use another --out)");
        if (ck.meta("schedule") != schedule_name || ck.meta("T") != std::to_string(T))
            fail(ckpt_path, ": the checkpoint was trained with the ", ck.meta("schedule"), " schedule and T = ", ck.meta("T"), ", the flags ask for ",
                 schedule_name, " and T = ", T, " (use another --out)");
        nn::restore(ck, model, &adam, &ema);
        step = ck.step;
        data_gen = ck.rngs.at("data");
        noise_gen = ck.rngs.at("noise");
        dropout_gen = ck.rngs.at("dropout");
        ddpm::DataCursor c;
        if (std::sscanf(ck.meta("data_cursor").c_str(), "%lu %lu %lu %lu", &c.epoch, &c.pos, &c.perm_seed, &c.perm_offset) != 4)
            fail(ckpt_path, ": metadata 'data_cursor' is not four integers");
        data.set_cursor(c);
        if (steps == 0) steps = std::stoll(ck.meta("steps"));  // the count the run was sized to
        log.read_csv(out + "/loss.csv", step);
        if (grad_norms_every > 0) grad_log.read_csv(out + "/grad_norms.csv", step);
        if (!log.rows.empty()) seconds_before = log.rows.back().seconds;
        std::printf("resumed %s at step %lld\n", ckpt_path.c_str(), (long long)step);
    }
    std::printf("train: %lld images %lldx%lld from %s | U-Net %lld parameters (%s) | batch %lld, %s, lr %g (%s), %d threads\n",
                (long long)data.size(), (long long)data.rows(), (long long)data.cols(), data_dir.c_str(), (long long)model.num_parameters(),
                cfg.str().c_str(), (long long)batch, steps ? cat(steps, " steps").c_str() : cat("steps to fit ", minutes, " minutes").c_str(),
                lr, decay.c_str(), omp_get_max_threads());

    // ---- what is written every `every` steps and at the end ----
    nn::UNet ema_model(cfg, uint64_t(seed));
    ema_model.eval();
    auto save = [&]() {
        nn::Checkpoint ck = nn::capture(model, &adam, &ema, step);
        ck.rngs = {{"data", data_gen}, {"noise", noise_gen}, {"dropout", dropout_gen}};
        ddpm::DataCursor c = data.cursor();
        ck.metadata["data_cursor"] = cat(c.epoch, " ", c.pos, " ", c.perm_seed, " ", c.perm_offset);
        ck.metadata["train"] = cat("data=", data_dir, " steps=", steps, " batch=", batch, " lr=", lr, " warmup=", warmup, " lr_decay=", decay,
                                   " schedule=", schedule_name, " T=", T, " ema=", ema_decay, " clip=", clip, " seed=", seed);
        ck.metadata["model"] = cfg.str();
        ck.metadata["steps"] = std::to_string(steps == std::numeric_limits<int64_t>::max() ? 0 : steps);  // 0: not sized yet
        ck.metadata["schedule"] = schedule_name;
        ck.metadata["T"] = std::to_string(T);
        nn::save_checkpoint(ckpt_path, ck);
        log.write_csv(out + "/loss.csv");
        log.write_svg(out + "/loss.svg", cat("DDPM training loss (", data_dir, ")"));
        if (grad_norms_every > 0) {
            grad_log.write_csv(out + "/grad_norms.csv");
            grad_log.write_svg(out + "/grad_norms.svg", "largest gradient norms per parameter tensor, before clipping");
        }
    };
    auto sample_grid = [&]() {
        ema_model.flat_parameters().copy_from(ema.shadow);
        ddpm::EpsModel eps_model = [&](const Tensor& x, const std::vector<int64_t>& t) {
            NoGradGuard ng;
            return ema_model.forward(Variable(x), t).value();
        };
        Philox gen(uint64_t(seed) + 12345);  // the same noise every time, so grids compare across steps
        Tensor x = ddpm::ddim_sample(sched, eps_model, {n_samples, 1, data.rows(), data.cols()}, ddim_steps, 0.0, gen);
        int nrow = int(std::ceil(std::sqrt(double(n_samples))));
        write_png_grid(out + "/samples.png", x, nrow);
        char name[64];
        std::snprintf(name, sizeof name, "/samples_%06lld.png", (long long)step);
        write_png_grid(out + name, x, nrow);
    };

    // ---- the training loop: Algorithm 1 ----
    std::signal(SIGINT, on_sigint);
    model.train();
    // --steps 0: time kProbe steps after kWarm warm-up steps (the first ones fill the allocator
    // cache) and fix the count so the run fits the time budget, keeping 4% for the sample grids
    // and checkpoints written every --every steps. Refine the count once at step kRefine: in one
    // run on the 2-core machine the steady pace settled 12% below the first steps' (0.62 -> 0.71
    // s/step), which stretched a 30-minute budget to 33. The cosine decay has barely begun by
    // then, so the new count leaves the learning rate unchanged to 0.1%.
    const int64_t start_step = step, kWarm = 2, kProbe = 10, kRefine = 200;
    double probe_start = 0, refine_start = 0;
    const bool sizing = steps == 0;
    const bool hard_limit = args.given("--minutes");  // an explicit --minutes also stops a long run
    const auto session_start = std::chrono::steady_clock::now();
    auto seconds_run = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start).count(); };
    if (sizing) steps = std::numeric_limits<int64_t>::max();
    cli::Progress progress(sizing ? start_step + kWarm + kProbe : steps, step);
    auto fit_steps = [&](double per_step) {  // steps that fit in what is left of the budget
        double left = minutes * 60 * 0.96 - seconds_before - seconds_run();
        steps = step + std::max<int64_t>(0, int64_t(left / per_step));
        progress.set_total(steps);
        std::printf("%s--steps 0: %.3g s per step, so %lld steps fit in %g minutes\n", progress.tty() ? "\r\033[K" : "", per_step, (long long)steps, minutes);
    };
    double smoothed = log.rows.empty() ? NAN : log.recent_loss(50);
    bool timed_out = false;
    while (step < steps && !g_interrupted) {
        Tensor x0 = data.next_batch(int(batch), data_gen);              // (B, 1, H, W) in [-1, 1]
        std::vector<int64_t> t = randint(batch, T, noise_gen);          // t ~ U{0..T-1}
        Tensor eps = randn(x0.shape(), noise_gen);                      // eps ~ N(0, I)
        model.zero_grad();
        Variable loss = ddpm::training_loss(sched, [&](const Variable& xt, const std::vector<int64_t>& tt) {
            return model.forward(xt, tt, &dropout_gen);
        }, x0, t, eps);
        double loss_value = loss.value().item();
        if (!std::isfinite(loss_value))
            fail("train: the loss is ", loss_value, " at step ", step + 1, "; nothing was saved after step ", step,
                 " (try a lower --lr, or --detect-anomaly to find the op)");
        loss.backward();

        if (grad_norms_every > 0 && (step + 1) % grad_norms_every == 0) grad_log.record(step + 1, model.flat_grads());
        double grad_norm = nn::clip_grad_norm(model.flat_grads(), clip);
        double rate = nn::warmup_lr(lr, step + 1, warmup);
        if (decay == "cosine" && step + 1 > warmup)
            rate *= 0.5 * (1 + std::cos(M_PI * double(step + 1 - warmup) / double(std::max<int64_t>(1, steps - warmup))));
        adam.step(model.flat_parameters(), model.flat_grads(), rate);
        ema.update(model.flat_parameters());
        step++;
        if (sizing && step - start_step == kWarm) probe_start = seconds_run();
        if (sizing && step - start_step == kWarm + kProbe) {
            fit_steps((seconds_run() - probe_start) / double(kProbe));
            progress = cli::Progress(steps, step);  // the ETA counts from here
            refine_start = seconds_run();
        }
        if (sizing && step - start_step == kRefine && step < steps)
            fit_steps((seconds_run() - refine_start) / double(kRefine - kWarm - kProbe));

        smoothed = std::isnan(smoothed) ? loss_value : 0.98 * smoothed + 0.02 * loss_value;
        double elapsed = seconds_run();
        log.add({step, loss_value, grad_norm, rate, seconds_before + elapsed});
        char fields[128];
        std::snprintf(fields, sizeof fields, "loss %.4f | %.1f img/s", smoothed, double(batch) * double(step - start_step) / std::max(elapsed, 1e-9));
        progress.update(step, fields, step == steps);
        timed_out = hard_limit && minutes > 0 && seconds_before + elapsed > minutes * 60;
        if (step % every == 0 || step == steps || timed_out) {
            save();
            sample_grid();
        }
        if (timed_out) break;
    }
    progress.finish();
    if (step == start_step && !g_interrupted)
        std::printf("nothing to train: %s is at step %lld of %lld; --steps N (more) continues it, --out DIR starts a new run\n",
                    ckpt_path.c_str(), (long long)step, (long long)steps);
    if (g_interrupted) {
        save();
        std::printf("interrupted: saved %s at step %lld; `make train` (or --resume) continues\n", ckpt_path.c_str(), (long long)step);
        return 130;
    }
    if (timed_out && step < steps) std::printf("stopped after %g minutes at step %lld of %lld\n", minutes, (long long)step, (long long)steps);
    std::printf("done: %s, %s/samples.png, %s/loss.svg\n", ckpt_path.c_str(), out.c_str(), out.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
