// build/figures: the pictures of the diffusion process, as PNG grids (one row per chain, one
// column per snapshot; snapshot timesteps are printed):
//   forward.png        x_0 -> x_T: q_sample of real digits at 8 evenly spaced t
//   oracle_reverse.png the reverse chain with the true posterior q(x_{t-1} | x_t, x_0), which
//                      knows x_0 and so walks back to the digit
//   reverse.png        the learned reverse chain p(x_{t-1} | x_t) from pure noise (--checkpoint)
//   one_to_many.png    digits noised to x_600, then 8 runs of the learned reverse chain from
//                      that same x_600: 8 different clean images (--checkpoint). Columns: x_0,
//                      x_600, then the 8 results.
// and of a class-conditional checkpoint (train --classes), with classifier-free guidance:
//   classes.png        one row per class 0..K-1 at --guidance, 8 samples each (DDIM)
//   guidance.png       one class (--digit) at w = 0, 0.5, 1, 2, 4, each row from one noise
// (reverse.png and one_to_many.png then use the null label: the model's unconditional half).
// Each picture carries its column labels ("t=999", "x_0", "run 1", "w=2") in a band above the grid.
#include <cstdio>
#include <omp.h>

#include "apps/cli.h"
#include "ddpm/figures.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tensor/formats/png.h"

using namespace dl;

using ddpm::Strip;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "figures", "draws the forward and reverse diffusion processes as PNG grids");
    std::string data_dir = args.str("--data", "data/mnist", "folder with the IDX images");
    std::string ckpt_path = args.str("--checkpoint", "", "trained checkpoint, for the learned reverse process ('' skips those figures)");
    std::string out = args.str("--out", "figures", "output folder");
    int64_t rows = args.integer("--rows", 4, {1, 64}, "chains per figure");
    int64_t t_one = args.integer("--t", 600, {0, ddpm::kMaxT - 1}, "timestep of the one-to-many figure");
    int64_t seed = args.integer("--seed", 0, kAnyInteger, "seed of the noise");
    int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: all)");
    std::string prec = args.str("--precision", "winograd", cli::kPrecisionHelp);
    double guidance = args.real("--guidance", ddpm::kDefaultGuidance, ddpm::kGuidance, "class-conditional checkpoints: the guidance weight of classes.png");
    int64_t digit = args.integer("--digit", 3, {0, ddpm::TrainConfig::kClasses.hi - 1}, "class-conditional checkpoints: the class of guidance.png");
    std::string sampler_name = args.str("--sampler", ddpm::kDefaultSampler,
                                        "the sampler of classes.png and guidance.png: " + ddpm::sampler_names() + " (reverse.png and "
                                        "one_to_many.png show Algorithm 2's chain: T model evaluations per image)");
    int64_t ddim_steps = args.integer("--ddim-steps", ddpm::kDefaultSamplerSteps, ddpm::kSamplerSteps,
                                      "the sampler's steps for classes.png and guidance.png, one model evaluation each (0: ancestral, all T)");
    double eta = args.real("--eta", ddpm::kDefaultEta, ddpm::kEta, "ddim's eta of classes.png and guidance.png");
    args.done();
    cli::set_threads("figures", threads);
    cli::set_precision("figures", prec);
    ddpm::parse_sampler(sampler_name);  // a bad name is refused before any work
    set_flush_denormals();
    make_dirs(out);

    ddpm::Dataset data(data_dir);
    const int64_t H = data.rows(), W = data.cols(), cols = 8;
    if (data.size() == 0) fail(data_dir, ": the dataset holds no images");
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < rows; i++) idx.push_back(i % data.size());
    Tensor x0 = data.images(idx);  // (rows, 1, H, W)
    Philox gen{uint64_t(seed)};

    // The model, when there is one: its schedule comes with it.
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear);
    ddpm::DiffusionModel model;
    if (!ckpt_path.empty()) {
        model = ddpm::load_model(ckpt_path, ddpm::Weights::EmaIfPresent);
        sched = model.schedule;
        const nn::UNetConfig& cfg = model.net->config();
        if (cfg.in_ch != 1 || cfg.resolution != H || H != W)
            fail(ckpt_path, ": the model takes ", cfg.in_ch, "x", cfg.resolution, "x", cfg.resolution, " images, ", data_dir, " holds 1x", H, "x", W);
    }
    const int64_t T = sched.T;
    if (t_one < 0 || t_one >= T) fail("figures: --t must be in [0, ", T, "), got ", t_one);
    std::vector<int64_t> snap_t;  // 8 evenly spaced timesteps, 0 .. T-1
    for (int64_t c = 0; c < cols; c++) snap_t.push_back(c * (T - 1) / (cols - 1));

    // (1) the forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, one eps per row
    {
        Strip s(rows, cols, H, W);
        Tensor eps = randn(x0.shape(), gen);
        for (int64_t c = 0; c < cols; c++) s.set_column(c, ddpm::q_sample(sched, x0, std::vector<int64_t>(size_t(rows), snap_t[size_t(c)]), eps));
        s.write(out + "/forward.png", ddpm::column_labels(snap_t));
        ddpm::show_columns("forward.png", snap_t);
    }

    // the reverse columns run from t = T-1 down to 0
    std::vector<int64_t> rev_t(snap_t.rbegin(), snap_t.rend());
    auto column_of = [&](int64_t t) {
        for (int64_t c = 0; c < cols; c++)
            if (rev_t[size_t(c)] == t) return c;
        return int64_t(-1);
    };

    // (2) the oracle reverse process: x_{t-1} ~ q(x_{t-1} | x_t, x_0), from x_{T-1} ~ q(x_{T-1} | x_0)
    {
        Strip s(rows, cols, H, W);
        Tensor x = ddpm::q_sample(sched, x0, std::vector<int64_t>(size_t(rows), T - 1), randn(x0.shape(), gen));
        s.set_column(0, x);
        for (int64_t t = T - 1; t >= 0; t--) {
            std::vector<int64_t> ts(size_t(rows), t);
            x = ddpm::sample_gaussian(ddpm::q_posterior(sched, x0, x, ts), ts, gen);  // now x_{t-1}
            if (int64_t c = column_of(t - 1); t >= 1 && c > 0) s.set_column(c, x);
        }
        s.set_column(cols - 1, x);  // the end of the chain
        s.write(out + "/oracle_reverse.png", ddpm::column_labels(rev_t, true));
        ddpm::show_columns("oracle_reverse.png", rev_t, true);
    }

    if (!model.net) {
        std::printf("no --checkpoint: skipped reverse.png and one_to_many.png\n");
        return 0;
    }
    const ddpm::EpsModel eps_model = model.eps();
    const ddpm::Sampler sampler = ddpm::sampler_from_flags(sampler_name, ddim_steps, eta, T);

    // (3) the learned reverse process from pure noise (Algorithm 2, all T steps)
    {
        Strip s(rows, cols, H, W);
        cli::Progress progress(T);
        Tensor xT = randn(x0.shape(), gen);
        s.set_column(0, xT);
        ddpm::p_sample_loop_from(sched, eps_model, xT, T - 1, gen, true, ddpm::VarianceKind::Beta, [&](int64_t t, const Tensor& x) {
            if (t >= 1)
                if (int64_t c = column_of(t - 1); c > 0) s.set_column(c, x);
            if (t == 0) s.set_column(cols - 1, x);
            progress.update(T - t, "reverse.png");
        });
        progress.finish();
        s.write(out + "/reverse.png", ddpm::column_labels(rev_t, true));
        ddpm::show_columns("reverse.png", rev_t, true);
    }

    // (4) one to many: the same x_t, eight reverse runs
    {
        Strip s(rows, cols + 2, H, W);
        Tensor xt = ddpm::q_sample(sched, x0, std::vector<int64_t>(size_t(rows), t_one), randn(x0.shape(), gen));
        s.set_column(0, x0);
        s.set_column(1, xt);
        cli::Progress progress(cols);
        for (int64_t run = 0; run < cols; run++) {
            s.set_column(2 + run, ddpm::p_sample_loop_from(sched, eps_model, xt, t_one, gen, true, ddpm::VarianceKind::Beta));
            progress.update(run + 1, "one_to_many.png", true);
        }
        progress.finish();
        std::vector<std::string> labels = {"x_0", "x_" + std::to_string(t_one)};
        for (int64_t run = 0; run < cols; run++) labels.push_back("run " + std::to_string(run + 1));
        s.write(out + "/one_to_many.png", labels);
        std::printf("%-18s columns: x_0, x_%lld, then 8 reverse runs from that x_%lld\n", "one_to_many.png", (long long)t_one, (long long)t_one);
    }
    if (!model.conditional()) return 0;

    // (5) each class at the default guidance, one row per class
    const int64_t K = model.net->config().num_classes;
    if (digit < 0 || digit >= K) fail("figures: --digit must be a class in [0, ", K, "), got ", digit);
    {
        std::vector<int64_t> labels;
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < cols; c++) labels.push_back(k);
        Philox noise{uint64_t(seed) + 1};
        Tensor x = ddpm::draw_samples(model, K * cols, sampler, K * cols, noise, nullptr, labels, guidance);
        write_png_grid(out + "/classes.png", x, int(cols), 2, GridLabels{cat("one row per class 0..", K - 1, ", guidance w=", guidance), {}});
        std::printf("%-18s rows: classes 0..%lld at guidance w = %g (%s, %s)\n", "classes.png", (long long)(K - 1), guidance,
                    sampler.str().c_str(), sampler.cost().c_str());
    }

    // (6) one class as the guidance grows, the same noise in each row (each column's sampler starts
    // from the same seed, so from the same x_T and, for the stochastic ones, the same later noise)
    {
        const std::vector<double> ws{0, 0.5, 1, 2, 4};
        Strip s(rows, int64_t(ws.size()), H, W);
        std::vector<std::string> labels;
        for (size_t c = 0; c < ws.size(); c++) {
            Philox noise{uint64_t(seed) + 2};
            s.set_column(int64_t(c), ddpm::draw_samples(model, rows, sampler, rows, noise, nullptr,
                                                        std::vector<int64_t>(size_t(rows), digit), ws[c]));
            labels.push_back(cat("w=", ws[c]));
        }
        s.write(out + "/guidance.png", labels);
        std::printf("%-18s class %lld, columns at guidance w = 0, 0.5, 1, 2, 4 from the same noise (%s, %s)\n", "guidance.png", (long long)digit,
                    sampler.str().c_str(), sampler.cost().c_str());
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
