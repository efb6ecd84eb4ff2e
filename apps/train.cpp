// build/train: trains the DDPM U-Net on an IDX image set (MNIST by default), Algorithm 1 of
// Ho et al. 2020, and writes into --out: checkpoint.safetensors (atomically), a PNG grid of
// samples from the EMA weights, and the loss curve as CSV and SVG. Ctrl-C saves a checkpoint
// before it exits; --resume continues from the folder's checkpoint bit for bit.
//
// The flags are the fields of ddpm::RunConfig (ddpm/trainer.h), whose defaults --help shows:
// --config picks the named configuration the other flags then change.
//
// Built with make MPI=1 (build-mpi/train), `mpirun -np N build-mpi/train ...` trains data-parallel:
// each rank takes --batch / N images of every step, rank 0 writes and prints (ddpm/mpi/README.md).
#include <cstdio>
#include <omp.h>

#include "apps/cli.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#ifdef DL_MPI
#include <csignal>

#include "ddpm/mpi/mpi_run.h"
#endif

using namespace dl;

#ifdef DL_MPI
// Under mpirun, Ctrl-C ends the job at once (Open MPI kills the ranks; the last checkpoint stays).
// SIGUSR1, which mpirun forwards to every rank, is the stop that saves: each rank asks its run to
// stop, the ranks agree after the step, and rank 0 writes the checkpoint (`kill -USR1 <mpirun>`).
static ddpm::Trainer* g_run = nullptr;
extern "C" void on_usr1(int) {
    if (g_run) g_run->request_stop();
}
#endif

int main(int argc, char** argv) try {
#ifdef DL_MPI
    cli::Args args(argc, argv, "train", "trains the DDPM U-Net on one-channel IDX images (MNIST by default); under `mpirun -np N` data-parallel, "
                   "each rank taking --batch / N images of every step (ddpm/mpi/README.md)");
#else
    cli::Args args(argc, argv, "train", "trains the DDPM U-Net on one-channel IDX images (MNIST by default)");
#endif
    ddpm::RunConfig cfg;
    cfg.train = ddpm::TrainConfig::named(args.str(
        "--config", "default", "the configuration the flags below start from, and whose values --help shows: 'default' (the measured "
        "30-minute recipe) or 'cond' (make train-cond's class-conditional model on the reference U-Net)"));
    ddpm::TrainConfig& t = cfg.train;
    const nn::UNetConfig ref = nn::UNetConfig::reference();
    args.field("--data", t.data_dir, "folder with train-images-idx3-ubyte");
    args.field("--out", cfg.out, "output folder: checkpoint, samples, loss curve");
    args.field("--steps", t.steps, ddpm::TrainConfig::kSteps, "total training steps; 0: as many as fit in --minutes, measured on the first steps");
    args.field("--batch", t.batch, ddpm::TrainConfig::kBatch, "images per step");
    args.field("--lr", t.lr.base, ddpm::TrainConfig::kLr, "Adam learning rate after warmup");
    args.field("--warmup", t.lr.warmup, ddpm::TrainConfig::kWarmup, "linear learning-rate warmup steps");
    args.field("--lr-decay", t.lr.decay, nn::parse_lr_decay, nn::lr_decay_name, "after warmup: 'cosine' (to 0 at --steps) or 'none'");
    args.field("--schedule", t.schedule, ddpm::parse_schedule, ddpm::schedule_name, "beta schedule: linear or cosine");
    args.field("--T", t.T, ddpm::TrainConfig::kT, "diffusion steps");
    args.field("--ch", t.model.ch, nn::UNetConfig::kCh, cat("U-Net base channels (the reference's: ", ref.ch, ")"));
    args.field("--res-blocks", t.model.num_res_blocks, nn::UNetConfig::kResBlocks,
               cat("ResBlocks per resolution on the way down (one more on the way up; the reference's: ", ref.num_res_blocks, ")"));
    args.field("--dropout", t.model.dropout, nn::UNetConfig::kDropout, cat("dropout in the ResBlocks (the reference's ", ref.dropout, " slows a 30-minute run)"));
    args.field("--classes", t.model.num_classes, ddpm::TrainConfig::kClasses, "class-conditional with this many classes, labels from train-labels-idx1-ubyte (0: unconditional)");
    args.field("--p-uncond", t.p_uncond, ddpm::TrainConfig::kPUncond, "with --classes: how often a label is replaced by the null label (classifier-free guidance)");
    args.field("--ema", t.ema_decay, ddpm::TrainConfig::kEma, "a fixed EMA decay of the parameters, instead of the power-function EMA");
    args.field("--ema-gamma", t.ema_gamma, ddpm::TrainConfig::kEmaGamma, "power-function EMA (Karras et al. 2024), decay (1 - 1/step)^(gamma + 1); 0: the fixed --ema");
    if (args.given("--ema") && !args.given("--ema-gamma")) t.ema_gamma = 0;  // --ema alone asks for the fixed decay
    args.field("--loss-weight", t.loss_weight, ddpm::parse_loss_weight, ddpm::loss_weight_name,
               "per-timestep loss weight: 'uniform' (Algorithm 1) or 'min-snr' (Hang et al. 2023)");
    args.field("--snr-gamma", t.snr_gamma, ddpm::TrainConfig::kSnrGamma, "min-snr's gamma: weight min(SNR_t, gamma) / SNR_t");
    args.field("--clip", t.clip, ddpm::TrainConfig::kClip, "global gradient-norm clipping");
    args.field("--seed", t.seed, "seed of the initial weights and every random stream");
    int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
    std::string prec = args.str("--precision", "winograd", cli::kPrecisionHelp);
    args.field("--every", cfg.every, ddpm::RunConfig::kEvery, "write checkpoint, samples and curves every N steps");
    args.field("--samples", cfg.samples, ddpm::RunConfig::kSamples, "images in the sample grid");
    args.field("--ddim-steps", cfg.ddim_steps, ddpm::kSamplerSteps, "the sampler's steps for the sample grid, one model evaluation each (0: ancestral, all T)");
    args.field("--minutes", cfg.minutes, ddpm::RunConfig::kMinutes, "time budget that --steps 0 sizes the run to; given explicitly, it also stops (and saves) a longer run; 0: none");
    cfg.minutes_limit = args.given("--minutes");
    args.field("--resume", cfg.resume, "continue from <out>/checkpoint.safetensors when it exists");
    args.field("--detect-anomaly", cfg.detect_anomaly, "check every op's output and gradient for NaN/Inf");
    args.field("--skip-nonfinite", cfg.skip_nonfinite, ddpm::RunConfig::kSkipNonfinite, "skip up to N steps in a row whose loss or gradient is not finite (0: stop at the first)");
    args.field("--grad-norms-every", cfg.grad_norms_every, ddpm::RunConfig::kGradNormsEvery, "log each parameter tensor's gradient norm every N steps (grad_norms.csv/.svg; 0: off)");
    args.field("--eval-every", cfg.eval_every, ddpm::RunConfig::kEvalEvery, "FID, precision and recall of --eval-n samples every N steps (eval.csv/.svg; 0: off)");
    args.field("--eval-n", cfg.eval_n, ddpm::RunConfig::kEvalN, "samples per --eval-every evaluation (the --sampler with --eval-ddim-steps)");
    args.field("--eval-ddim-steps", cfg.eval_ddim_steps, ddpm::kSamplerSteps, "the sampler's steps for the --eval-every samples, one model evaluation each");
    args.field("--sampler", cfg.sampler, "the sampler of the sample grid and the evaluations: " + ddpm::sampler_names() + " (ddpm/samplers.h)");
    args.field("--eta", cfg.eta, ddpm::kEta, "ddim's eta of the grid and the evaluations (0: deterministic, 1: ancestral-like)");
    args.field("--ema-snapshot-every", cfg.ema_snapshot_every, ddpm::RunConfig::kEmaSnapshotEvery,
               "post-hoc EMA: snapshot the EMAs of sigma_rel 0.05 and 0.10 into <out>/ema_snapshots every N steps (0: off); "
               "build/eval --ema-sigma-rel rebuilds any width from them");
    args.done();

    cli::set_threads("train", threads);
    cli::set_precision("train", prec);
    set_flush_denormals();
#ifdef DL_MPI  // ---- data-parallel under mpirun: N ranks, rank 0 alone tells and writes ----
    ddpm::MpiRun mpi(argc, argv);
    mpi.check_batch(t.batch);
    ddpm::DataParallel* parallel = mpi.size() > 1 ? &mpi : nullptr;  // one rank: the one-process run
    const bool tells = mpi.rank() == 0;
#else
    ddpm::DataParallel* parallel = nullptr;
    const bool tells = true;
#endif

    // ---- the run: fresh, or continued from its checkpoint; what it tells goes to the terminal ----
    cli::Progress progress(0);
    ddpm::TrainEvents events;
    events.note = [&](const std::string& line) { std::printf("%s%s\n", progress.tty() ? "\r\033[K" : "", line.c_str()); };
    events.judge_progress = cli::progress_callback("training the judge (once per data set)");
    events.sized = [&](const ddpm::Trainer& run, bool first) {
        if (first) progress = cli::Progress(run.budget.steps(), run.state.step);  // the ETA counts from here
        else progress.set_total(run.budget.steps());
    };
    events.step = [&](const ddpm::Trainer& run) {
        char fields[128];
        std::snprintf(fields, sizeof fields, "loss %.4f | %.1f img/s", run.folder.loss_log.smoothed_loss(), run.images_per_second());
        progress.update(run.state.step, fields, run.state.step == run.budget.steps());
    };
    if (!tells) events = {};
    ddpm::Trainer run(cfg, events, parallel);
    const ddpm::TrainState& st = run.state;
#ifdef DL_MPI
    g_run = &run;
    struct Forget {  // before run goes, the handler forgets it
        ~Forget() { g_run = nullptr; }
    } forget;
    std::signal(SIGUSR1, on_usr1);
#endif
    if (!tells) {  // another rank: its share of every step, in silence; rank 0's exit status is the job's
        run.run();
        return 0;
    }
#ifdef DL_MPI
    if (parallel) std::printf("train: data-parallel over %d ranks, %lld images each per step\n", mpi.size(), (long long)(t.batch / mpi.size()));
#endif
    std::printf("train: %lld images %lldx%lld from %s | U-Net %lld parameters (%s) | batch %lld, %s, lr %g (%s), %d threads, conv2d %s\n",
                (long long)st.data.size(), (long long)st.data.rows(), (long long)st.data.cols(), t.data_dir.c_str(),
                (long long)st.model.num_parameters(), st.config.model.str().c_str(), (long long)t.batch,
                run.budget.sized() ? cat(run.budget.steps(), " steps").c_str() : cat("steps to fit ", cfg.minutes, " minutes").c_str(),
                t.lr.base, nn::lr_decay_name(t.lr.decay), omp_get_max_threads(), precision_name(precision()));
    std::printf("sample grid: %s, %s\n", cfg.grid_sampler().str().c_str(), cfg.grid_sampler().cost().c_str());
    progress = cli::Progress(run.budget.sized() ? run.budget.steps() : run.start_step + run.budget.kWarm + run.budget.kProbe, run.start_step);

    const ddpm::Trainer::End end = run.run();
    progress.finish();
    if (end == ddpm::Trainer::End::Interrupted) {
        std::printf("interrupted: saved %s at step %lld; `make train` (or --resume) continues\n", run.folder.checkpoint().c_str(), (long long)st.step);
        return 130;
    }
    if (end == ddpm::Trainer::End::NothingToTrain)
        std::printf("nothing to train: %s is at step %lld of %lld; --steps N (more) continues it, --out DIR starts a new run\n",
                    run.folder.checkpoint().c_str(), (long long)st.step, (long long)run.budget.steps());
    if (run.skipped) std::printf("skipped %lld steps with a non-finite loss or gradient (--skip-nonfinite)\n", (long long)run.skipped);
    if (end == ddpm::Trainer::End::OutOfTime)
        std::printf("stopped after %g minutes at step %lld of %lld\n", cfg.minutes, (long long)st.step, (long long)run.budget.steps());
    std::printf("done: %s, %s/samples.png, %s/report.html\n", run.folder.checkpoint().c_str(), cfg.out.c_str(), cfg.out.c_str());
    return 0;
} catch (const std::exception& e) {
#ifdef DL_MPI
    return ddpm::mpi_exit(e, "train");
#endif
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
