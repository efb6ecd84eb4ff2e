// build/eval: numbers for sample quality and likelihood (ddpm/eval/eval.h, ddpm/eval/likelihood.h).
//   build/eval --data DIR                     the judge's accuracy on DIR's test split (trains and
//                                             caches the judge beside the data the first time)
//   build/eval --data DIR --samples F.npy     FID, precision, recall and the class histogram of
//   build/eval --data DIR --checkpoint F      the samples (or of --n samples drawn from F) against
//                                             DIR's test split, beside real training digits at the
//                                             same n (the floor); with a checkpoint, also the
//                                             variational bound in bits/dim on test images;
//                                             of a class-conditional one (train --classes), the
//                                             judge's accuracy on the classes asked for and the
//                                             FID of each class
#include <cmath>
#include <cstdio>
#include <numeric>
#include <omp.h>

#include "apps/cli.h"
#include "ddpm/eval/eval.h"
#include "ddpm/eval/likelihood.h"
#include "ddpm/eval/ruler.h"
#include "ddpm/eval/tables.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#include "tensor/formats/io.h"
#include "tensor/formats/npy.h"

using namespace dl;
using ddpm::json_metrics, ddpm::json_number, ddpm::json_ruler, ddpm::print_judges, ddpm::print_ruler, ddpm::print_row;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "eval", "sample quality (FID, precision, recall with a classifier's features) and the variational bound");
    std::string data_dir = args.str("--data", "data/mnist", "folder with the four IDX files (images and labels)");
    std::string npy = args.str("--samples", "", "a .npy of samples (N, H, W) or (N, 1, H, W) in [-1, 1], as build/sample writes");
    std::string ckpt_path = args.str("--checkpoint", "", "a checkpoint to draw --n samples from (EMA weights) and to compute the bound of");
    int64_t n = args.integer("--n", 1000, ddpm::RunConfig::kEvalN, "samples to draw from --checkpoint; the floor and the reference use as many (FID depends on n)");
    std::string sampler_name = args.str("--sampler", ddpm::kDefaultSampler, "the samples' sampler: " + ddpm::sampler_names() + " (ddpm/samplers.h)");
    int64_t ddim_steps = args.integer("--ddim-steps", ddpm::kDefaultSamplerSteps, ddpm::kSamplerSteps,
                                      "the sampler's steps, one model evaluation each (0: ancestral, all T)");
    double eta = args.real("--eta", ddpm::kDefaultEta, ddpm::kEta, "ddim's eta of the samples (0: deterministic, 1: ancestral-like)");
    double sigma_rel = args.real("--ema-sigma-rel", 0, ddpm::kSigmaRel, "post-hoc EMA: score the average of this relative width, rebuilt from the snapshots "
                                                       "in the checkpoint's folder (build/train --ema-snapshot-every; 0: the checkpoint's EMA)");
    bool no_clip = args.flag("--no-clip", "do not clip each step's predicted x_0 to [-1, 1]");
    int64_t bpd_n = args.integer("--bpd-n", 64, {0, 10000}, "test images for the bound (0: skip it)");
    int64_t bpd_stride = args.integer("--bpd-t-stride", 10, {1, ddpm::kMaxT}, "evaluate one KL term of the bound per block of k timesteps (1: all T)");
    std::string out = args.str("--out", "", "folder for bpd_per_t.csv and .svg ('': the checkpoint's folder)");
    int64_t seed = args.integer("--seed", 0, kAnyInteger, "seed of the noise and of the floor's choice of digits");
    int64_t batch = args.integer("--batch", 64, ddpm::TrainConfig::kBatch, "images per forward pass");
    std::string klass = args.str("--class", "all", "class-conditional checkpoints: the classes asked for, 'all' (equal numbers of each), K, or '' (unconditional)");
    double guidance = args.real("--guidance", ddpm::kDefaultGuidance, ddpm::kGuidance, "class-conditional checkpoints: classifier-free guidance weight w");
    bool json = args.flag("--json", "print every figure as one JSON object");
    int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
    std::string prec = args.str("--precision", "winograd", cli::kPrecisionHelp);
    args.done();
    cli::set_threads("eval", threads);
    cli::set_precision("eval", prec);
    set_flush_denormals();
    if (!npy.empty() && !ckpt_path.empty()) fail("eval: give --samples or --checkpoint, not both");
    if (sigma_rel != 0 && ckpt_path.empty()) fail("eval: --ema-sigma-rel ", sigma_rel, " needs --checkpoint (its folder holds the snapshots)");

    // ---- the samples of a .npy (their count sets n) ----
    ddpm::Dataset train(data_dir, "train"), test(data_dir, "test");
    Tensor samples;  // (N, 1, R, R)
    if (!npy.empty()) {
        Tensor x = read_npy(npy);
        if (x.ndim() == 3) x = x.reshape({x.dim(0), 1, x.dim(1), x.dim(2)});
        if (x.ndim() != 4 || x.dim(1) != 1 || x.dim(2) != train.rows() || x.dim(3) != train.cols() ||
            !ddpm::RunConfig::kEvalN.contains(x.dim(0)))
            fail(npy, ": expected samples (N, ", train.rows(), ", ", train.cols(), ") with N in [", ddpm::RunConfig::kEvalN.lo, ", ",
                 ddpm::RunConfig::kEvalN.hi, "], found ", shape_str(x.shape()));
        samples = x;
        n = x.dim(0);
    }

    // ---- the judge, and its view of the reference: the first n test images ----
    if (test.size() < 4) fail(data_dir, ": the test split has ", test.size(), " images; the metrics need at least 4");
    const ddpm::Ruler ruler =
        ddpm::load_or_train_ruler(data_dir, train, test, n, cli::progress_callback("training the judges (once per data set)"));
    const ddpm::Judge& judge = ruler.first();  // the classes, and the single judge's table
    if (!json) print_judges(ruler, test.size());
    if (npy.empty() && ckpt_path.empty()) {
        if (json) std::printf("{\"accuracy\": %.6g, \"test_images\": %lld}\n", judge.test_accuracy, (long long)test.size());
        return 0;
    }

    // ---- the samples of a checkpoint ----
    ddpm::DiffusionModel model;
    ddpm::Sampler sampler;
    ddpm::PostHocResult posthoc;  // --ema-sigma-rel: what was rebuilt
    std::vector<int64_t> labels;  // a class-conditional checkpoint: the classes asked for
    if (!ckpt_path.empty()) {
        model = ddpm::load_model(ckpt_path, sigma_rel != 0 ? ddpm::Weights::Trained : ddpm::Weights::EmaIfPresent);
        if (sigma_rel != 0) posthoc = ddpm::apply_posthoc_ema(model, sigma_rel);
        const nn::UNetConfig& cfg = model.net->config();
        if (cfg.in_ch != 1 || cfg.resolution != train.rows() || train.rows() != train.cols())
            fail(ckpt_path, ": the model draws ", cfg.in_ch, "x", cfg.resolution, "x", cfg.resolution, " images, ", data_dir, " holds 1x",
                 train.rows(), "x", train.cols());
        if (model.conditional()) labels = ddpm::class_labels(klass, n, cfg.num_classes, "eval: --class");
        if (!labels.empty() && cfg.num_classes > judge.net->config().classes)
            fail(ckpt_path, ": the model has ", cfg.num_classes, " classes, the judge knows ", judge.net->config().classes);
        Philox gen{uint64_t(seed)};
        sampler = ddpm::sampler_from_flags(sampler_name, ddim_steps, eta, model.schedule.T);
        samples = ddpm::draw_samples(model, n, sampler, batch, gen, cli::progress_callback("sampling"), labels,
                                     labels.empty() ? 0 : guidance, !no_clip);
    }

    // ---- the metrics, and the floor: real training digits at the same n, and held-out test
    // digits (the judge never saw them) when the test split has n more past the reference ----
    Philox pick(uint64_t(seed) + 1);
    std::vector<int64_t> perm = randperm(train.size(), pick);
    std::vector<int64_t> floor_idx(perm.begin(), perm.begin() + std::min(n, train.size()));
    ddpm::SampleMetrics m = judge.score(samples);
    ddpm::SampleMetrics floor = judge.score(train.images(floor_idx));
    const ddpm::RulerMetrics rm = ruler.score(samples), rfloor = ruler.score(train.images(floor_idx));  // every judge
    ddpm::ClassMetrics by_class;
    if (!labels.empty()) by_class = judge.score_classes(samples, labels);
    const int64_t n_ref = m.n_reference;
    ddpm::SampleMetrics heldout;
    if (test.size() >= n_ref + n) {
        std::vector<int64_t> idx(static_cast<size_t>(n));
        std::iota(idx.begin(), idx.end(), n_ref);
        heldout = judge.score(test.images(idx));
    }

    // ---- the bound ----
    ddpm::BpdReport bpd;
    if (model.net && bpd_n > 0) {
        std::vector<int64_t> idx(static_cast<size_t>(std::min(bpd_n, test.size())));
        std::iota(idx.begin(), idx.end(), 0);
        Philox gen{uint64_t(seed) + 2};
        bpd = ddpm::calc_bpd_loop(model.schedule, model.eps(), test.images(idx), bpd_stride, batch, gen, ddpm::VarianceKind::Beta,
                                  cli::progress_callback("variational bound"));
        std::string dir = !out.empty() ? out : ckpt_path.find('/') != std::string::npos ? ckpt_path.substr(0, ckpt_path.rfind('/')) : ".";
        make_dirs(dir);
        ddpm::write_bpd_csv(dir + "/bpd_per_t.csv", bpd, model.schedule.T);
        ddpm::write_bpd_svg(dir + "/bpd_per_t.svg", bpd, cat("terms of the variational bound (", bpd.n_images, " test images)"));
        if (!json) std::printf("wrote %s/bpd_per_t.csv and .svg\n", dir.c_str());
    }

    if (json) {
        std::printf("{\"accuracy\": %.6g, %s, %s, \"n_reference\": %lld", judge.test_accuracy, json_metrics("", m).c_str(),
                    json_metrics("floor_", floor).c_str(), (long long)n_ref);
        if (heldout.n) std::printf(", %s", json_metrics("heldout_", heldout).c_str());
        std::printf("%s%s", json_ruler("ruler_", rm).c_str(), json_ruler("ruler_floor_", rfloor).c_str());
        if (model.net)
            std::printf(", \"sampler\": \"%s\", \"model_evaluations_per_sample\": %lld, \"ema_sigma_rel\": %.6g", ddpm::sampler_name(sampler.kind),
                        (long long)sampler.evaluations(), sigma_rel);
        if (posthoc.snapshots)
            std::printf(", \"ema_posthoc_step\": %lld, \"ema_posthoc_snapshots\": %lld, \"ema_posthoc_residual\": %.6g", (long long)posthoc.step,
                        (long long)posthoc.snapshots, posthoc.residual);
        if (!labels.empty()) {
            std::string acc, fids;
            for (size_t k = 0; k < by_class.fid.size(); k++)
                acc += cat(k ? ", " : "", json_number(by_class.accuracy[k])), fids += cat(k ? ", " : "", json_number(by_class.fid[k]));
            std::printf(", \"guidance\": %.6g, \"class_accuracy\": %.6g, \"class_accuracy_per_class\": [%s], \"fid_per_class\": [%s]", guidance,
                        by_class.overall_accuracy, acc.c_str(), fids.c_str());
        }
        if (bpd.n_images) std::printf(", \"bpd\": %.6g, \"bpd_se\": %.6g, \"bpd_images\": %lld, \"bpd_t_stride\": %lld", bpd.total_bpd, bpd.total_se,
                                      (long long)bpd.n_images, (long long)bpd.t_stride);
        std::printf("}\n");
        return 0;
    }
    std::printf("\n%s against the first %lld test images (FID depends on n: compare at equal n)\n",
                npy.empty() ? cat(n, " samples of ", ckpt_path, " (", posthoc.snapshots ? posthoc.str() : model.ema ? "EMA weights" : "trained weights", ", ",
                                  sampler.str(), no_clip ? ", x_0 not clipped" : "", ", ", sampler.cost(), ")").c_str()
                            : cat(n, " samples from ", npy).c_str(),
                (long long)n_ref);
    std::printf("  %-20s %6s %9s %10s %7s %14s %11s   %s\n", "", "n", "FID", "precision", "recall", "H(classes)/logK", "confidence", "histogram 0..K-1");
    print_row("samples", m);
    print_row("real training digits", floor);
    if (heldout.n) print_row("held-out test digits", heldout);
    print_ruler(ruler, rm, rfloor);
    if (!labels.empty()) {
        std::printf("\nclass-conditional, guidance w = %g: the judge sees the class asked for in %.1f%% of the samples\n", guidance,
                    100 * by_class.overall_accuracy);
        std::printf("  %-8s %8s %10s %10s   (per-class FID: each class's samples against the reference digits of that class)\n", "class", "n",
                    "accuracy", "FID");
        for (size_t k = 0; k < by_class.fid.size(); k++)
            if (by_class.n[k]) std::printf("  %-8zu %8lld %9.1f%% %10.3f\n", k, (long long)by_class.n[k], 100 * by_class.accuracy[k], by_class.fid[k]);
    }
    if (bpd.n_images)
        std::printf("\nvariational bound: %.4f +- %.4f bits/dim (standard error over %lld test images; %zu of the %lld KL terms, one "
                    "drawn in each block of %lld t, weighted by the block; prior %.2g, decoder %.4f)\n",
                    bpd.total_bpd, bpd.total_se, (long long)bpd.n_images, bpd.t.size() - 1, (long long)(model.schedule.T - 1),
                    (long long)bpd.t_stride, bpd.prior_bpd, bpd.decoder_bpd);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
