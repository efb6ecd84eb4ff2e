// build/inspect: every gradient of the DDPM noise-prediction loss, by name. From a checkpoint
// (or a fresh seeded init) and one batch, it runs the loss of Algorithm 1 forward and backward
// with every intermediate gradient kept, prints a table of every parameter and activation in
// graph order (value mean / std / max|x|, gradient norm and max|g|, |g|/|x|), and on request
// dumps all of it as safetensors, draws the graph as Graphviz DOT, checks the parameters'
// gradients against float64 finite differences, and sweeps the loss and gradient norm over t.
#include <chrono>
#include <cstdio>
#include <memory>
#include <omp.h>

#include "apps/cli.h"
#include "autograd/anomaly.h"
#include "autograd/inspect.h"
#include "ddpm/inspect.h"
#include "ddpm/trainer.h"
#include "tensor/cpu.h"
#include "tensor/formats/io.h"

using namespace dl;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "inspect", "one forward and backward of the DDPM loss, with every gradient by name");
    std::string ckpt_path = args.str("--checkpoint", "", "checkpoint written by train ('': a fresh init from --seed)");
    bool use_ema = args.flag("--ema", "inspect the checkpoint's EMA weights instead of the trained ones");
    nn::UNetConfig fresh = nn::UNetConfig::reference();  // a fresh init: the reference U-Net, changed by the flags
    args.field("--ch", fresh.ch, nn::UNetConfig::kCh, "fresh init: U-Net base channels");
    std::string model_str = args.str("--model", "", "fresh init: more of the config, e.g. 'ch_mult=1,2 attn_res=4 resolution=8'");
    ddpm::ScheduleKind schedule = ddpm::ScheduleKind::Linear;
    args.field("--schedule", schedule, ddpm::parse_schedule, ddpm::schedule_name, "fresh init: beta schedule, linear or cosine");
    int64_t T = args.integer("--T", 1000, ddpm::TrainConfig::kT, "fresh init: diffusion steps");
    std::string data_dir = args.str("--data", "", "folder with train-images-idx3-ubyte ('': synthetic shapes)");
    int64_t batch = args.integer("--batch", 8, ddpm::TrainConfig::kBatch, "images in the batch");
    int64_t t_fixed = args.integer("--t", -1, {-1, ddpm::kMaxT - 1}, "timestep of every sample (-1: uniform at random per sample)");
    int64_t seed = args.integer("--seed", 0, kAnyInteger, "seed of the batch, t, the noise, the dropout masks (and a fresh init)");
    double dropout = args.real("--dropout", -1, {-1, nn::UNetConfig::kDropout.hi}, "dropout probability (-1: the model's; 0: off, to compare with another implementation)");
    std::string dump_path = args.str("--out", "", "write inputs, loss, parameters, activations and all gradients to this .safetensors");
    std::string dot_path = args.str("--dot", "", "write the autograd graph to this Graphviz .dot file");
    int64_t gradcheck_k = args.integer("--gradcheck", 0, {0, 1000000}, "check K random coordinates of every parameter's gradient in float64 (slow: use a small --batch)");
    std::string gradcheck_match = args.str("--gradcheck-match", "", "--gradcheck only the parameters whose key contains this, e.g. 'mid.attn'");
    bool per_t = args.flag("--per-t", "sweep t over buckets of [0, T): loss and gradient norm as CSV and SVG");
    int64_t buckets = args.integer("--per-t-buckets", 20, {1, 1000}, "buckets of the --per-t sweep");
    std::string per_t_out = args.str("--per-t-out", "per_t", "--per-t writes <this>.csv and <this>.svg");
    std::string klass = args.str("--class", "", "class-conditional models: every image's label K, 'all' (in turn), or '' (the batch's own labels)");
    bool table = !args.flag("--no-table", "skip the table");
    bool anomaly = args.flag("--detect-anomaly", "check every op's output and gradient for NaN/Inf");
    int64_t threads = args.integer("--threads", 0, kThreads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
    std::string prec = args.str("--precision", "fp32", cli::kPrecisionHelp);
    args.done();
    auto start = std::chrono::steady_clock::now();
    cli::set_threads("inspect", threads);
    cli::set_precision("inspect", prec);
    set_flush_denormals();
    set_detect_anomaly(anomaly);
    if (dropout != -1 && !(dropout >= 0)) fail("inspect: --dropout must be -1 (the model's) or in [0, ", nn::UNetConfig::kDropout.hi, "], got ", dropout);
    if (use_ema && ckpt_path.empty()) fail("inspect: --ema needs a --checkpoint (a fresh init has no EMA weights)");

    // ---- the data (to know the resolution before building a fresh model) ----
    std::unique_ptr<ddpm::Dataset> data;
    if (!data_dir.empty()) data = std::make_unique<ddpm::Dataset>(data_dir);

    // ---- the model and the schedule: from the checkpoint, or fresh from the flags ----
    ddpm::DiffusionModel m;
    if (!ckpt_path.empty()) {
        for (const char* f : {"--ch", "--model", "--schedule", "--T"})
            if (args.given(f)) fail("inspect: ", f, " is for a fresh init; with --checkpoint the model and schedule come from its metadata");
        m = ddpm::load_model(ckpt_path, use_ema ? ddpm::Weights::Ema : ddpm::Weights::Trained, dropout);
        m.net->train();  // dropout as in training, masks from the seed
    } else {
        if (data) fresh = ddpm::model_for_data(fresh, *data, data_dir);  // as train does
        fresh = nn::UNetConfig::parse(fresh.str() + " " + model_str);   // later keys override earlier ones
        if (dropout >= 0) fresh.dropout = dropout;
        m = ddpm::fresh_model(fresh, schedule, T, uint64_t(seed));
    }
    nn::UNet& model = *m.net;
    const nn::UNetConfig& cfg = model.config();
    const ddpm::Schedule& sched = m.schedule;
    T = sched.T;
    if (per_t && (buckets < 1 || buckets > T)) fail("inspect: --per-t-buckets must be in [1, T = ", T, "], got ", buckets);

    // ---- the batch: x0, t, eps ----
    Philox gen{uint64_t(seed)};
    const uint64_t dropout_seed = uint64_t(seed) + 1;
    Tensor x0;  // (B, 1, R, R) in [-1, 1]
    std::vector<int64_t> labels;  // class-conditional: the batch's labels, or --class
    if (data) {
        if (data->rows() != cfg.resolution || data->cols() != cfg.resolution)
            fail(data_dir, ": images are ", data->rows(), "x", data->cols(), ", the model takes ", cfg.resolution, "x", cfg.resolution);
        x0 = data->next_batch(int(batch), gen, cfg.num_classes > 0 && !data->labels().empty() ? &labels : nullptr);
    } else {
        if (cfg.in_ch != 1) fail("inspect: the synthetic images have one channel, the model takes ", cfg.in_ch, " (pass --data)");
        x0 = ddpm::synthetic_batch(batch, cfg.resolution, gen);
    }
    ddpm::InspectBatch b = ddpm::make_batch(x0, T, t_fixed, gen);
    if (!klass.empty()) labels = ddpm::class_labels(klass, batch, cfg.num_classes, "inspect: --class");
    for (int64_t c : labels)
        if (c >= cfg.num_classes) fail(data_dir, ": label ", c, " is outside the model's classes [0, ", cfg.num_classes, ")");
    if (cfg.num_classes > 0 && labels.empty()) labels.assign(size_t(batch), model.null_label());  // no labels: the null class
    const ddpm::EpsModel net = ddpm::eps_model(model, labels);

    // ---- one forward and backward, every gradient kept ----
    ddpm::Inspection in = ddpm::inspect_training_loss(sched, model, net, b, dropout_seed, m.loss_weights);
    std::vector<NodeStats> rows = node_stats(in.nodes);
    int64_t n_param = 0, n_input = 0, n_act = 0;
    for (const NodeStats& r : rows) (r.kind == "param" ? n_param : r.kind == "input" ? n_input : n_act)++;
    std::string ts;
    for (size_t i = 0; i < b.t.size() && i < 16; i++) ts += cat(i ? " " : "", b.t[i]);
    std::string cs;
    for (size_t i = 0; i < labels.size() && i < 16; i++) cs += cat(i ? " " : " | class = ", labels[i] == model.null_label() ? std::string("null") : cat(labels[i]));
    std::printf("inspect: %s | U-Net %lld parameters (%s) | %s %lld T | batch %lld from %s | t = %s%s%s | dropout %g\n",
                (m.source + (m.ema ? " (EMA)" : "")).c_str(),
                (long long)model.num_parameters(), cfg.str().c_str(), ddpm::schedule_name(sched.kind), (long long)T, (long long)batch,
                data ? data_dir.c_str() : "synthetic images", ts.c_str(), b.t.size() > 16 ? " ..." : "", cs.c_str(), cfg.dropout);
    if (table) std::printf("\n%s\n", stats_table(rows).c_str());
    std::printf("loss %.6g (%s) | %lld nodes: %lld parameters, %lld inputs, %lld activations | forward %.3f s, backward %.3f s (graph kept, all gradients retained) | conv2d %s\n",
                in.loss.value().item(), m.loss_weight == "uniform" ? "uniform over t" : cat("weighted ", m.loss_weight).c_str(), (long long)rows.size(), (long long)n_param, (long long)n_input, (long long)n_act,
                in.forward_seconds, in.backward_seconds,
                precision() == Precision::BF16       ? "bf16 (operands rounded to bf16, fp32 sums; gradients kept in fp32, gradcheck in fp64)"
                : precision() == Precision::WINOGRAD ? "winograd (fp32, F(4x4,3x3) for the 3x3 convolutions; gradcheck in fp64)"
                                                     : "fp32");

    // ---- the dump and the graph ----
    if (!dump_path.empty()) {
        Safetensors st = ddpm::inspection_dump(in, model, sched, dropout_seed);
        st.save(dump_path);
        std::printf("wrote %s: %zu tensors\n", dump_path.c_str(), st.entries().size());
    }
    if (!dot_path.empty()) {
        write_file_atomic(dot_path, graph_dot(in.nodes, "DDPM loss"));
        std::printf("wrote %s: %lld op nodes, %lld leaf nodes (dot -Tsvg %s -o graph.svg)\n", dot_path.c_str(), (long long)n_act,
                    (long long)(n_param + n_input), dot_path.c_str());
    }
    in = ddpm::Inspection();  // release the graph

    // ---- loss and gradient norm against t ----
    if (per_t) {
        std::vector<ddpm::PerTRow> sweep = ddpm::per_t_sweep(sched, model, net, b.x0, b.eps, buckets, dropout_seed, m.loss_weights);
        ddpm::write_per_t_csv(per_t_out + ".csv", sweep);
        ddpm::write_per_t_svg(per_t_out + ".svg", sweep, cat("loss and gradient norm against t (batch ", batch, ")"));
        std::printf("wrote %s.csv and %s.svg: %lld buckets of t\n", per_t_out.c_str(), per_t_out.c_str(), (long long)buckets);
    }

    // ---- finite differences in float64 ----
    if (gradcheck_k > 0) {
        GradcheckOptions opt;
        opt.max_coords = gradcheck_k;
        opt.seed = uint64_t(seed);
        std::unique_ptr<cli::Progress> progress;  // made at the first evaluation, which knows the total
        opt.on_eval = [&](int64_t done, int64_t total) {
            if (!progress) progress = std::make_unique<cli::Progress>(total, 0, 30);
            progress->update(done, "gradcheck: float64 loss evaluations", done == total);
        };
        GradcheckReport r = ddpm::gradcheck_training_loss(sched, model, net, b, dropout_seed, opt, gradcheck_match, m.loss_weights);
        if (progress) progress->finish();
        std::printf("\ngradcheck (float64, %lld coordinates per tensor, eps %g; a coordinate passes when |analytic - numeric| <= %g + %g |numeric|)\n",
                    (long long)gradcheck_k, opt.eps, opt.atol, opt.rtol);
        int64_t passed = 0;
        for (const GradcheckEntry& e : r.entries) {
            std::printf("  %s  %-40s %3lld coords  max rel err %9.3e  max abs err %9.3e\n", e.ok ? "ok  " : "FAIL", e.name.c_str(),
                        (long long)e.checked, e.max_rel_err, e.max_abs_err);
            passed += e.ok;
        }
        std::printf("gradcheck: %lld of %zu parameter tensors pass%s\n", (long long)passed, r.entries.size(), r.ok ? "" : ": FAILED");
        if (!r.ok) return 1;
    }
    std::printf("total %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
