// build/sample: draws images from a trained checkpoint (the EMA weights unless --raw) with DDIM
// or, with --ddim-steps 0, the full ancestral sampler of Algorithm 2, and writes them as a NumPy
// .npy of float32 (N, H, W) in [-1, 1] and as a PNG grid.
#include <cmath>
#include <cstdio>
#include <omp.h>

#include "apps/cli.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#include "tensor/formats/npy.h"
#include "tensor/formats/png.h"

using namespace dl;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "sample", "draws images from a trained DDPM checkpoint");
    std::string ckpt_path = args.str("--checkpoint", "runs/mnist/checkpoint.safetensors", "checkpoint written by train");
    int64_t n = args.integer("--n", 64, ddpm::kSampleCount, "number of images");
    std::string npy = args.str("--out", "samples.npy", "NumPy file for the images, float32 (N, H, W) in [-1, 1]");
    std::string png = args.str("--png", "samples.png", "PNG grid of the images ('' for none)");
    std::string sampler_name = args.str("--sampler", ddpm::kDefaultSampler, "the sampler: " + ddpm::sampler_names() + " (ddpm/samplers.h)");
    int64_t ddim_steps = args.integer("--ddim-steps", ddpm::kDefaultSamplerSteps, ddpm::kSamplerSteps,
                                      "the sampler's steps, one model evaluation each; 0: ancestral over all T steps");
    double eta = args.real("--eta", ddpm::kDefaultEta, ddpm::kEta, "ddim's eta (0: deterministic, 1: ancestral-like)");
    int64_t seed = args.integer("--seed", 0, kAnyInteger, "seed of the noise");
    int64_t batch = args.integer("--batch", 64, ddpm::TrainConfig::kBatch, "images per forward pass");
    int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: all)");
    std::string prec = args.str("--precision", "winograd", cli::kPrecisionHelp);
    bool raw = args.flag("--raw", "use the trained weights instead of their EMA");
    double sigma_rel = args.real("--ema-sigma-rel", 0, ddpm::kSigmaRel, "post-hoc EMA: the average of this relative width, rebuilt from the snapshots "
                                                       "in the checkpoint's folder (build/train --ema-snapshot-every; 0: the checkpoint's EMA)");
    std::string klass = args.str("--class", "", "class-conditional checkpoints: a class K, or 'all' (equal numbers of each, in order); '' samples unconditionally");
    double guidance = args.real("--guidance", ddpm::kDefaultGuidance, ddpm::kGuidance, "with --class: classifier-free guidance weight w, eps = (1 + w) eps(c) - w eps(null)");
    args.done();
    cli::set_threads("sample", threads);
    cli::set_precision("sample", prec);
    set_flush_denormals();
    ddpm::parse_sampler(sampler_name);  // a bad name or eta is refused before the checkpoint is read

    if (raw && sigma_rel != 0) fail("sample: --raw and --ema-sigma-rel ask for different weights; give one");
    ddpm::DiffusionModel model = ddpm::load_model(ckpt_path, raw || sigma_rel != 0 ? ddpm::Weights::Trained : ddpm::Weights::Ema);
    if (sigma_rel != 0) std::printf("%s\n", ddpm::apply_posthoc_ema(model, sigma_rel).str().c_str());
    const nn::UNetConfig& cfg = model.net->config();
    const ddpm::Schedule& sched = model.schedule;
    if (cfg.in_ch != 1) fail("sample: ", ckpt_path, " holds a model of ", cfg.in_ch, " input channels; sample writes one-channel images");

    std::vector<int64_t> labels = ddpm::class_labels(klass, n, cfg.num_classes, "sample: --class");
    if (labels.empty() && args.given("--guidance")) fail("sample: --guidance needs --class (K or all)");
    Philox gen{uint64_t(seed)};
    const int64_t R = cfg.resolution;
    cli::Progress progress(n);
    const ddpm::Sampler sampler = ddpm::sampler_from_flags(sampler_name, ddim_steps, eta, sched.T);
    const std::string how = sampler.str();
    std::printf("%s: %s\n", how.c_str(), sampler.cost().c_str());
    Tensor all = ddpm::draw_samples(model, n, sampler, batch, gen, [&](int64_t done, int64_t) { progress.update(done, how, true); },
                                    labels, labels.empty() ? 0 : guidance)
                     .reshape({n, R, R});  // (N, H, W)
    progress.finish();
    write_npy(npy, all);
    if (!png.empty()) write_png_grid(png, all.reshape({n, 1, R, R}), int(std::ceil(std::sqrt(double(n)))));
    std::printf("wrote %s%s%s\n", npy.c_str(), png.empty() ? "" : " and ", png.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
