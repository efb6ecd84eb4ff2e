// Training end to end: a tiny U-Net overfits a few fixed (x0, t, eps) examples, and the programs
// train -> checkpoint -> sample work together, resume bit for bit, save on Ctrl-C, and fail
// clearly on bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/trainer.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/unet.h"
#include "tensor/formats/io.h"
#include "tensor/formats/json.h"
#include "tensor/formats/npy.h"
#include "tensor/formats/png.h"
#include "tensor/ops.h"
#include "tests/programs.h"
#include "tests/tiny_unet.h"

using namespace dl;
using namespace dl::test;

// build/train on the synthetic set in <dir>/data: a ch-8 U-Net, batches of 4, 4-image grids from 2 DDIM steps.
static std::string tiny_train(const std::string& dir) {
    return build_dir() + "/train --data " + dir + "/data --ch 8 --batch 4 --samples 4 --ddim-steps 2";
}

TEST_CASE("a tiny U-Net overfits 16 fixed noisy images: the loss falls by a large factor") {
    nn::UNetConfig cfg = tiny_unet();
    cfg.dropout = 0;
    nn::UNet model(cfg, 1);
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear, 100);
    Philox gen(2);
    // 16 blobs at random places, with fixed timesteps and noise: a set small enough to memorize
    Tensor x0 = Tensor::zeros({16, 1, 8, 8});
    for (int64_t i = 0; i < 16; i++) {
        int64_t cy = i % 5 + 1, cx = (i * 3) % 5 + 1;
        for (int64_t y = 0; y < 8; y++)
            for (int64_t x = 0; x < 8; x++)
                x0.set_flat(i * 64 + y * 8 + x, (std::abs(y - cy) + std::abs(x - cx) <= 1) ? 1.0 : -1.0);
    }
    std::vector<int64_t> t = randint(16, 100, gen);
    Tensor eps = randn(x0.shape(), gen);
    nn::Adam adam(model.num_parameters(), DType::F32);
    double first = 0, last = 0;
    for (int step = 0; step < 150; step++) {
        model.zero_grad();
        Variable loss = ddpm::training_loss(sched, ddpm::eps_model(model), x0, t, eps);
        loss.backward();
        adam.step(model.flat_parameters(), model.flat_grads(), 3e-3);
        if (step == 0) first = loss.value().item();
        last = loss.value().item();
    }
    MESSAGE("loss ", first, " -> ", last);
    CHECK(first > 0.5);
    CHECK(last < first / 10);
}

TEST_CASE("train writes a checkpoint that sample reads; a resumed run matches an uninterrupted one") {
    std::string bin = build_dir(), dir = temp_dir("train");
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    std::string common = tiny_train(dir) + " --threads 2 --seed 5";
    std::string out;

    // 4 steps in one go
    REQUIRE(run(common + " --steps 4 --every 4 --out " + dir + "/straight", &out) == 0);
    INFO(out);
    CHECK(file_exists(dir + "/straight/checkpoint.safetensors"));
    CHECK(file_exists(dir + "/straight/samples.png"));
    CHECK(file_exists(dir + "/straight/loss.csv"));
    CHECK(file_exists(dir + "/straight/loss.svg"));
    CHECK(file_exists(dir + "/straight/report.html"));  // rewritten at every checkpoint (tests/test_report.cpp checks the page)

    // 1 step (the time limit stops it), then resumed to 4
    REQUIRE(run(common + " --steps 4 --every 2 --minutes 1e-9 --out " + dir + "/resumed", &out) == 0);  // stops after 1 step
    REQUIRE(run(common + " --steps 4 --every 2 --resume --out " + dir + "/resumed", &out) == 0);
    CHECK(out.find("resumed") != std::string::npos);
    nn::Checkpoint a = nn::load_checkpoint(dir + "/straight/checkpoint.safetensors");
    nn::Checkpoint b = nn::load_checkpoint(dir + "/resumed/checkpoint.safetensors");
    CHECK(a.step == 4);
    CHECK(b.step == 4);
    REQUIRE(a.model.size() == b.model.size());
    double worst = 0;
    for (size_t i = 0; i < a.model.size(); i++) worst = std::max(worst, max_abs_diff(a.model[i].value, b.model[i].value));
    for (size_t i = 0; i < a.ema.size(); i++) worst = std::max(worst, max_abs_diff(a.ema[i].value, b.ema[i].value));
    CHECK(worst == 0.0);  // bit for bit
    // a finished run, started again, says so and leaves the checkpoint as it was
    std::string finished = read_file(dir + "/resumed/checkpoint.safetensors");
    REQUIRE(run(common + " --steps 4 --resume --out " + dir + "/resumed", &out) == 0);
    CHECK(out.find("nothing to train") != std::string::npos);
    CHECK(read_file(dir + "/resumed/checkpoint.safetensors") == finished);

    // sample reads it
    REQUIRE(run(bin + "/sample --checkpoint " + dir + "/straight/checkpoint.safetensors --n 3 --ddim-steps 2 --out " + dir +
                    "/s.npy --png " + dir + "/s.png",
                &out) == 0);
    Tensor s = read_npy(dir + "/s.npy");
    CHECK(s.shape() == Shape{3, 28, 28});
    CHECK(s.dtype() == DType::F32);
    CHECK(file_exists(dir + "/s.png"));
    // every sampler by name, with its step count; eta is ddim's alone
    for (const char* sp : {"ddim --eta 1", "dpm++2m", "dpm++2m-sde"}) {
        REQUIRE(run(bin + "/sample --checkpoint " + dir + "/straight/checkpoint.safetensors --n 3 --ddim-steps 3 --sampler " + sp +
                        " --out " + dir + "/o.npy --png ''",
                    &out) == 0);
        CHECK(read_npy(dir + "/o.npy").shape() == Shape{3, 28, 28});
    }
    CHECK(run(bin + "/sample --checkpoint " + dir + "/straight/checkpoint.safetensors --n 3 --sampler dpm++2m --eta 1 --out " + dir +
                  "/o.npy --png ''",
              &out) != 0);
    CHECK(out.find("--eta is ddim's; dpm++2m takes none, got 1") != std::string::npos);

    // bad input: a clear message and a non-zero exit
    CHECK(run(bin + "/sample --checkpoint " + dir + "/missing.safetensors", &out) != 0);
    CHECK(out.find("missing.safetensors: cannot open") != std::string::npos);
    CHECK(run(common + " --steps 1 --data " + dir + "/nowhere --out " + dir + "/x", &out) != 0);
    CHECK(out.find("nowhere") != std::string::npos);
    CHECK(run(bin + "/train --bogus 1", &out) != 0);
    CHECK(out.find("unknown flag --bogus") != std::string::npos);
    // resuming with another model configuration is refused, and the checkpoint is untouched
    std::string before = read_file(dir + "/straight/checkpoint.safetensors");
    CHECK(run(bin + "/train --data " + dir + "/data --ch 16 --resume --steps 5 --out " + dir + "/straight", &out) != 0);
    CHECK(out.find("the checkpoint's model is") != std::string::npos);
    CHECK(read_file(dir + "/straight/checkpoint.safetensors") == before);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("the programs refuse bad flags before any work, naming the flag and the value") {
    std::string bin = build_dir(), dir = temp_dir("flags"), out;
    ddpm::write_synthetic_idx(dir + "/data", 8, 3);
    std::string train = tiny_train(dir) + " --threads 1 --steps 2 --out " + dir + "/run";
    struct Case { std::string cmd, message; };
    std::vector<Case> cases = {
        {train + " --ddim-steps 5000", "ddim_steps (--ddim-steps) must be in [0, 1000] (T; 0: the ancestral sampler over all T), got 5000"},
        {train + " --samples 0", "train: --samples expects an integer in [1, 1024], got '0'"},
        {train + " --clip -1", "train: --clip expects a number in [1e-06, 1e+06], got '-1'"},
        {train + " --lr 0", "train: --lr expects a number in [1e-09, 1], got '0'"},
        {train + " --ema 1", "train: --ema expects a number in [0, 0.999999], got '1'"},
        {train + " --dropout nan", "train: --dropout expects a number in [0, 0.99], got 'nan'"},
        {train + " --threads -2", "train: --threads expects an integer in [0, 1024], got '-2'"},
        {train + " --lr-decay step", "train: --lr-decay: learning-rate decay: expected 'cosine' or 'none', got 'step'"},
        {train + " --schedule quad", "train: --schedule: schedule: expected 'linear' or 'cosine', got 'quad'"},
        {train + " --eval-every -1", "train: --eval-every expects an integer in [0, 1099511627776], got '-1'"},
        {train + " --loss-weight snr", "train: --loss-weight: loss weighting: expected 'uniform' or 'min-snr', got 'snr'"},
        {train + " --snr-gamma 0", "train: --snr-gamma expects a number in [0.001, 1000], got '0'"},
        {train + " --ema-gamma -1", "train: --ema-gamma expects a number in [0, 1000], got '-1'"},
        {train + " --res-blocks 0", "train: --res-blocks expects an integer in [1, 4], got '0'"},
        {train + " --config big", "TrainConfig: no configuration named 'big' (default or cond)"},
        {bin + "/eval --eta -0.5", "eval: --eta expects a number in [0, 1], got '-0.5'"},
        {bin + "/sample --eta 2", "sample: --eta expects a number in [0, 1], got '2'"},
        {bin + "/sample --ddim-steps -1", "sample: --ddim-steps expects an integer in [0, 1000000], got '-1'"},
        {bin + "/sample --sampler heun", "--sampler: expected ancestral, ddim, dpm++2m or dpm++2m-sde, got 'heun'"},
        {bin + "/sample --raw=1", "--raw takes no value, got '1'"},
        {bin + "/sample --png", "--png needs a value"},
        {bin + "/inspect --ema", "--ema needs a --checkpoint"},
        {bin + "/inspect --per-t --per-t-buckets 0", "inspect: --per-t-buckets expects an integer in [1, 1000], got '0'"},
        {bin + "/figures --data " + dir + "/data --t 5000 --out " + dir + "/fig", "--t must be in [0, 1000), got 5000"},
        {bin + "/bench --reps 0", "bench: --reps expects an integer in [1, 100000], got '0'"},
        {bin + "/bench --simd foo", "bench: --simd expects avx512, avx2 or portable, got 'foo'"},
    };
    for (const Case& c : cases) {
        INFO(c.cmd);
        CHECK(run(c.cmd, &out) != 0);
        CHECK_MESSAGE(out.find(c.message) != std::string::npos, out);
    }
    CHECK_FALSE(file_exists(dir + "/run/checkpoint.safetensors"));  // none of them trained

    // resuming with another schedule or T is refused, and the checkpoint is untouched
    REQUIRE(run(train, &out) == 0);
    std::string before = read_file(dir + "/run/checkpoint.safetensors");
    CHECK(run(train + " --steps 4 --resume --T 50", &out) != 0);
    CHECK(out.find("trained with the linear schedule and T = 1000, the flags ask for linear and T = 50") != std::string::npos);
    CHECK(run(train + " --steps 4 --resume --schedule cosine", &out) != 0);
    CHECK(read_file(dir + "/run/checkpoint.safetensors") == before);
    // an empty value is a value: sample --png '' writes no PNG
    REQUIRE(run("cd " + dir + " && " + bin + "/sample --checkpoint run/checkpoint.safetensors --n 1 --ddim-steps 1 --png ''", &out) == 0);
    CHECK(file_exists(dir + "/samples.npy"));
    CHECK_FALSE(file_exists(dir + "/samples.png"));  // the default name, had '' not been taken as a value
    std::system(("rm -rf " + dir).c_str());
}

// What `build/train --help` shows as a flag's default: "(default X)" at the end of its line.
static std::string help_default(const std::string& help, const std::string& flag) {
    size_t at = help.find("\n  " + flag + " ");
    if (at == std::string::npos) return "(no " + flag + ")";
    std::string line = help.substr(at + 1, help.find('\n', at + 1) - at - 1);
    size_t open = line.rfind("(default ");
    if (open == std::string::npos || line.back() != ')') return "(no default)";
    std::string def = line.substr(open + 9, line.size() - open - 10);  // "64; [1, 1024]": the default, then a number's range
    size_t range = def.rfind("; [");
    return range == std::string::npos ? def : def.substr(0, range);
}

TEST_CASE("train --help shows the values of the configuration a run uses: the defaults, or --config cond's") {
    auto g = [](double x) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", x);
        return std::string(buf);
    };
    for (const char* name : {"default", "cond"}) {
        ddpm::RunConfig c;
        c.train = ddpm::TrainConfig::named(name);
        const ddpm::TrainConfig& t = c.train;
        std::string help;
        REQUIRE(run(build_dir() + "/train --config " + name + " --help", &help) == 0);
        INFO(help);
        const std::vector<std::pair<std::string, std::string>> shown = {
            {"--config", "default"},  // the flag's own default; the values below are the named config's
            {"--data", t.data_dir},
            {"--out", c.out},
            {"--steps", std::to_string(t.steps)},
            {"--batch", std::to_string(t.batch)},
            {"--lr", g(t.lr.base)},
            {"--warmup", std::to_string(t.lr.warmup)},
            {"--lr-decay", nn::lr_decay_name(t.lr.decay)},
            {"--schedule", ddpm::schedule_name(t.schedule)},
            {"--T", std::to_string(t.T)},
            {"--ch", std::to_string(t.model.ch)},
            {"--res-blocks", std::to_string(t.model.num_res_blocks)},
            {"--dropout", g(t.model.dropout)},
            {"--classes", std::to_string(t.model.num_classes)},
            {"--p-uncond", g(t.p_uncond)},
            {"--ema", g(t.ema_decay)},
            {"--ema-gamma", g(t.ema_gamma)},
            {"--loss-weight", ddpm::loss_weight_name(t.loss_weight)},
            {"--snr-gamma", g(t.snr_gamma)},
            {"--clip", g(t.clip)},
            {"--seed", std::to_string(t.seed)},
            {"--every", std::to_string(c.every)},
            {"--samples", std::to_string(c.samples)},
            {"--ddim-steps", std::to_string(c.ddim_steps)},
            {"--minutes", g(c.minutes)},
            {"--skip-nonfinite", std::to_string(c.skip_nonfinite)},
            {"--grad-norms-every", std::to_string(c.grad_norms_every)},
            {"--eval-every", std::to_string(c.eval_every)},
            {"--eval-n", std::to_string(c.eval_n)},
            {"--eval-ddim-steps", std::to_string(c.eval_ddim_steps)},
        };
        for (const auto& [flag, value] : shown) {
            INFO(name, " ", flag);
            CHECK(help_default(help, flag) == value);
        }
    }
    // the two differ where make train-cond's model does
    std::string a, b;
    REQUIRE(run(build_dir() + "/train --help", &a) == 0);
    REQUIRE(run(build_dir() + "/train --config cond --help", &b) == 0);
    CHECK(help_default(a, "--ch") != help_default(b, "--ch"));
    CHECK(help_default(b, "--classes") == "10");
}

// bench --train --json's rows of one kind ("step_op" or "forward_op"): name -> the row's members
using BenchRow = std::map<std::string, Json>;
static std::map<std::string, BenchRow> bench_rows(const std::string& out, const std::string& kind) {
    std::map<std::string, BenchRow> rows;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] != '{') continue;
        JsonReader r(line, "bench --json", "line");
        Json row = r.value();
        r.finish();
        BenchRow m(row.members.begin(), row.members.end());
        if (m["op"].text == kind) rows[m["name"].text] = m;
    }
    return rows;
}

static double member(const BenchRow& row, const std::string& key) { return std::stod(row.at(key).text); }

TEST_CASE("bench --train --forward-ops: the no-grad forward's table has the step's forward ops, no backward, and its shares add up to 1") {
    const std::string cmd = build_dir() + "/bench --train --ch 8 --res-blocks 1 --batch 2 --reps 2 --threads 1 --json";
    std::string step_out, fwd_out;
    REQUIRE(run(cmd, &step_out) == 0);
    REQUIRE(run(cmd + " --forward-ops", &fwd_out) == 0);
    const auto step = bench_rows(step_out, "step_op"), fwd = bench_rows(fwd_out, "forward_op");
    REQUIRE(fwd.count("conv2d forward"));
    CHECK(bench_rows(fwd_out, "step_op").empty());
    double share = 0;
    for (const auto& [name, row] : fwd) {
        INFO(name);
        CHECK(name.find("backward") == std::string::npos);
        share += member(row, "fraction");
        // every op of the forward runs in the step too, at least as often (the same model; the
        // step adds the loss's ops)
        if (name.size() > 8 && name.compare(name.size() - 8, 8, " forward") == 0) {
            REQUIRE(step.count(name));
            CHECK(member(row, "calls_per_forward") <= member(step.at(name), "calls_per_step"));
        }
    }
    CHECK(member(fwd.at("conv2d forward"), "calls_per_forward") == member(step.at("conv2d forward"), "calls_per_step"));
    CHECK(share == doctest::Approx(1).epsilon(0.01));  // each fraction is rounded to 4 decimals
}

TEST_CASE("the recipe's flags reach the run: ResBlocks per level, min-SNR weighting, the power-function EMA") {
    std::string bin = build_dir(), dir = temp_dir("recipe"), out;
    ddpm::write_synthetic_idx(dir + "/data", 80, 3);  // the judge needs 64 or more
    std::string train = tiny_train(dir) + " --threads 2 --steps 3 --every 3";
    REQUIRE(run(train + " --res-blocks 1 --loss-weight min-snr --snr-gamma 0.05 --ema-gamma 7 --out " + dir + "/a", &out) == 0);
    REQUIRE(run(train + " --res-blocks 1 --ema 0.995 --out " + dir + "/b", &out) == 0);  // --ema alone: the fixed decay
    REQUIRE(run(train + " --out " + dir + "/c", &out) == 0);                             // the defaults: the measured recipe
    nn::Checkpoint a = nn::load_checkpoint(dir + "/a/checkpoint.safetensors"), b = nn::load_checkpoint(dir + "/b/checkpoint.safetensors");
    nn::Checkpoint c = nn::load_checkpoint(dir + "/c/checkpoint.safetensors");
    CHECK(nn::UNetConfig::parse(a.meta("model")).num_res_blocks == 1);
    CHECK(a.meta("train").find(" ema=power:7 ") != std::string::npos);
    CHECK(b.meta("train").find(" ema=0.995 ") != std::string::npos);
    CHECK(c.meta("train").find(" ema=power:6.94 ") != std::string::npos);
    CHECK(c.meta("train").find(" lr=0.002 ") != std::string::npos);
    CHECK(nn::UNetConfig::parse(c.meta("model")).num_res_blocks == 1);
    CHECK(a.meta("train").find(" loss_weight=min-snr:0.05") != std::string::npos);
    CHECK(b.meta("train").find("loss_weight") == std::string::npos);  // uniform: Algorithm 1, not mentioned
    nn::UNetConfig two = nn::UNetConfig::parse(a.meta("model"));
    two.num_res_blocks = 2;
    CHECK(a.model.size() < nn::UNet(two).state_dict().size());  // fewer ResBlocks, fewer tensors
    // same seed, same data and noise: the losses differ from the first step on (the weighting),
    // and the EMA differs (power: after 3 updates nearly the weights; 0.995: nearly the init)
    ddpm::TrainLog la, lb;
    la.read_csv(dir + "/a/loss.csv", 3);
    lb.read_csv(dir + "/b/loss.csv", 3);
    REQUIRE(la.rows.size() == 3);
    REQUIRE(lb.rows.size() == 3);
    CHECK(la.rows[0].loss < lb.rows[0].loss);  // same weights, x_t and t at step 1; every loss weight at most 1, most below
    double ema_gap_a = 0, ema_gap_b = 0;
    for (size_t i = 0; i < a.model.size(); i++) {
        ema_gap_a = std::max(ema_gap_a, max_abs_diff(a.model[i].value, a.ema[i].value));
        ema_gap_b = std::max(ema_gap_b, max_abs_diff(b.model[i].value, b.ema[i].value));
    }
    CHECK(ema_gap_a < 0.5 * ema_gap_b);
    // inspect computes the loss the run trained with
    REQUIRE(run(bin + "/inspect --data " + dir + "/data --checkpoint " + dir + "/a/checkpoint.safetensors --batch 2 --no-table", &out) == 0);
    CHECK(out.find("(weighted min-snr:0.05)") != std::string::npos);
    REQUIRE(run(bin + "/inspect --data " + dir + "/data --checkpoint " + dir + "/b/checkpoint.safetensors --batch 2 --no-table", &out) == 0);
    CHECK(out.find("(uniform over t)") != std::string::npos);
    // eval takes the sampler's eta and clipping
    REQUIRE(run(bin + "/eval --data " + dir + "/data --checkpoint " + dir + "/a/checkpoint.safetensors --n 4 --sampler ddim --ddim-steps 2 "
                "--eta 1 --no-clip --bpd-n 0", &out) == 0);
    CHECK(out.find("ddim 2 steps, eta 1, x_0 not clipped") != std::string::npos);
    REQUIRE(run(bin + "/eval --data " + dir + "/data --checkpoint " + dir + "/a/checkpoint.safetensors --n 4 --ddim-steps 2 "
                "--sampler dpm++2m-sde --bpd-n 0", &out) == 0);
    CHECK(out.find("dpm++2m-sde 2 steps") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

// The cells of the table row that starts with "| name |".
static std::vector<std::string> table_row(const std::string& table, const std::string& name) {
    size_t at = table.find("\n| " + name + " |");
    if (at == std::string::npos) return {};
    std::string line = table.substr(at + 1, table.find('\n', at + 1) - at - 1);
    std::vector<std::string> cells;
    for (size_t p = 1, q; (q = line.find('|', p)) != std::string::npos; p = q + 1) cells.push_back(line.substr(p + 1, q - p - 2));
    return cells;
}

TEST_CASE("make sweep's script: each line trains and scores one run into one table, @name scores a run again, a restart skips what is done") {
    std::string dir = temp_dir("sweep"), out;
    ddpm::write_synthetic_idx(dir + "/data", 80, 3);  // the judge needs 64 or more
    write_file_atomic(dir + "/sweep.txt",
                      "# a run, and the same run scored with another sampler\n"
                      "tiny | --ch 8 --batch 4 --samples 4 --ddim-steps 2 --steps 3 --threads 2 |\n"
                      "\n"
                      "tiny-eta1 | @tiny | --eta 1 --ddim-steps 3\n");
    const std::string sweep = "BUILD=" + build_dir() + " sh ddpm/sweep.sh " + dir + "/sweep.txt " + dir + "/out 1 4 2 " + dir + "/data";
    REQUIRE(run(sweep, &out) == 0);
    INFO(out);
    const std::string table = read_file(dir + "/out/table.md");
    INFO(table);
    std::vector<std::string> a = table_row(table, "tiny"), b = table_row(table, "tiny-eta1");
    // run, train flags, eval flags, steps, images/s, FID mean, FID sd, KID, KID se, precision, recall, floor FID mean, floor KID
    REQUIRE(a.size() == 13);
    REQUIRE(b.size() == 13);
    CHECK(a[1] == "`--ch 8 --batch 4 --samples 4 --ddim-steps 2 --steps 3 --threads 2`");
    CHECK(a[2] == "-");
    CHECK(b[1] == "`@tiny`");
    CHECK(b[2] == "`--eta 1 --ddim-steps 3`");
    CHECK(a[3] == "3");  // the steps the run reached
    CHECK(b[3] == "3");
    for (const auto* row : {&a, &b})
        for (int k = 4; k <= 12; k++) {  // numbers; the FIDs, their sd and KID's se positive (KID itself may be below 0)
            char* end = nullptr;
            double v = std::strtod((*row)[size_t(k)].c_str(), &end);
            const bool positive = k == 4 || k == 5 || k == 6 || k == 8 || k == 11;
            CHECK_MESSAGE((*end == '\0' && std::isfinite(v) && (!positive || v > 0) && (k == 7 || k == 12 || v >= 0)), k, ": ", (*row)[size_t(k)]);
        }
    CHECK(a[5] != b[5]);  // another sampler, other samples, another FID
    CHECK(a[11] == b[11]);  // the same floor
    CHECK(a[12] == b[12]);
    // started again: nothing is trained or scored twice
    REQUIRE(run(sweep, &out) == 0);
    CHECK(out.find("tiny is in " + dir + "/out/table.md already; skipped") != std::string::npos);
    CHECK(read_file(dir + "/out/table.md") == table);
    // a table of before the ruler is not appended to
    make_dirs(dir + "/old");
    write_file_atomic(dir + "/old/table.md", "| run | train flags | eval flags | steps | images/s | FID | precision | recall | floor FID |\n");
    CHECK(run("BUILD=" + build_dir() + " sh ddpm/sweep.sh " + dir + "/sweep.txt " + dir + "/old 1 4 2 " + dir + "/data", &out) != 0);
    CHECK(out.find("has the single judge's columns") != std::string::npos);
    // a line that scores a run no line made
    write_file_atomic(dir + "/bad.txt", "x | @nowhere |\n");
    CHECK(run("BUILD=" + build_dir() + " sh ddpm/sweep.sh " + dir + "/bad.txt " + dir + "/out 1 4 2 " + dir + "/data", &out) != 0);
    CHECK(out.find("sweep: x scores " + dir + "/out/nowhere, which has no checkpoint") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("--steps 0 sizes the run to --minutes from the first steps, and refines the count once") {
    std::string dir = temp_dir("sizing"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    REQUIRE(run(tiny_train(dir) + " --threads 2 --steps 0 --minutes 0.1 --out " + dir + "/run", &out) == 0);
    INFO(out);
    size_t first = out.find(", so "), second = out.find(", so ", first + 1);
    REQUIRE(first != std::string::npos);
    nn::Checkpoint ck = nn::load_checkpoint(dir + "/run/checkpoint.safetensors");
    if (ck.step > ddpm::StepBudget::kRefine) CHECK(second != std::string::npos);  // refined at step 200, where the run got there
    // the sized count is kept for a resume; the run reaches it or (--minutes given) stops on time
    int64_t sized = std::stoll(ck.meta("steps"));
    // Past the probe on most machines; a busy one (3 steps/s under the sanitizers) may have spent
    // the 6 s before it, and then the run is sized to the steps it took.
    CHECK(ck.step >= 1);
    CHECK(ck.step <= sized);
    CHECK(sized < 100000);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("Ctrl-C during training saves a checkpoint and exits with 130") {
    std::string dir = temp_dir("sigint");
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    std::string cmd = "exec " + tiny_train(dir) + " --threads 1 --steps 1000000 --every 1 --out " + dir + "/run > " + dir + "/log 2>&1";
    pid_t pid = spawn_shell(cmd);
    // wait for the first checkpoint (every step writes one), then interrupt
    for (int i = 0; i < 600 && !file_exists(dir + "/run/loss.csv"); i++) usleep(100 * 1000);
    bool started = file_exists(dir + "/run/loss.csv");
    kill(pid, started ? SIGINT : SIGKILL);  // never leave a million-step run behind
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(started);
    std::string log = read_file(dir + "/log");
    INFO(log);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK(log.find("interrupted: saved") != std::string::npos);
    nn::Checkpoint ck = nn::load_checkpoint(dir + "/run/checkpoint.safetensors");
    CHECK(ck.step >= 1);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("train never replaces another run's checkpoint, and a step that goes non-finite is not applied") {
    std::string dir = temp_dir("nothing_lost"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    std::string train = tiny_train(dir) + " --threads 2 --out " + dir + "/run";
    REQUIRE(run(train + " --steps 2 --every 2", &out) == 0);
    std::string saved = read_file(dir + "/run/checkpoint.safetensors");
    CHECK(run(train + " --steps 3", &out) != 0);  // no --resume
    CHECK(out.find("checkpoint.safetensors exists; --resume continues that run, or give another --out") != std::string::npos);
    CHECK(read_file(dir + "/run/checkpoint.safetensors") == saved);

    // Weights of 1e30 (finite, as a checkpoint's must be): the first step's activations overflow
    // float32. That step is not applied and the run stops, naming the op; the checkpoint stays.
    std::string wild = tiny_train(dir) + " --threads 2 --every 1 --out " + dir + "/wild";
    REQUIRE(run(wild + " --steps 2", &out) == 0);
    {
        nn::Checkpoint ck = nn::load_checkpoint(dir + "/wild/checkpoint.safetensors");
        for (nn::NamedTensor& p : ck.model) p.value.fill_(1e30);
        nn::save_checkpoint(dir + "/wild/checkpoint.safetensors", ck);
    }
    std::string good = read_file(dir + "/wild/checkpoint.safetensors");
    CHECK(run(wild + " --steps 6 --resume", &out) != 0);
    INFO(out);
    CHECK(out.find("has a non-finite loss or gradient (detect_anomaly: ") != std::string::npos);
    CHECK(out.find("it was not applied, and the run stops: the last checkpoint is kept") != std::string::npos);
    CHECK(read_file(dir + "/wild/checkpoint.safetensors") == good);
    // --skip-nonfinite 2 skips two such steps in a row, then stops as well
    CHECK(run(wild + " --steps 6 --resume --skip-nonfinite 2", &out) != 0);
    CHECK(out.find("skipped (1 in a row)") != std::string::npos);
    CHECK(out.find("skipped (2 in a row)") != std::string::npos);
    CHECK(read_file(dir + "/wild/checkpoint.safetensors") == good);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("a save that fails (a full disk) says so, and the last checkpoint and logs stay as they were") {
    std::string dir = temp_dir("full_disk"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    std::string train = tiny_train(dir) + " --threads 2 --resume --out " + dir + "/run";
    REQUIRE(run(train + " --steps 2 --every 2", &out) == 0);
    const std::string ckpt = read_file(dir + "/run/checkpoint.safetensors"), loss = read_file(dir + "/run/loss.csv");
    // an LD_PRELOAD shim makes every write(2) of more than 100 kB fail with ENOSPC
    REQUIRE(run("cc -shared -fPIC -o " + dir + "/shim.so tests/fail_write_shim.c -ldl", &out) == 0);
    std::string full = "DL_FAIL_WRITES_OVER=100000 LD_PRELOAD=" + dir + "/shim.so ASAN_OPTIONS=verify_asan_link_order=0 ";
    CHECK(run(full + train + " --steps 4 --every 1", &out) != 0);
    INFO(out);
    CHECK(out.find("train: could not save step 3: ") != std::string::npos);
    CHECK(out.find("No space left on device") != std::string::npos);
    CHECK(out.find("the last checkpoint is intact") != std::string::npos);
    CHECK(read_file(dir + "/run/checkpoint.safetensors") == ckpt);
    CHECK(read_file(dir + "/run/loss.csv") == loss);
    CHECK(run("ls " + dir + "/run | grep -c tmp", &out) != 0);  // no temporary file left behind
    REQUIRE(run(train + " --steps 4 --every 1", &out) == 0);     // and with room again, the run goes on
    CHECK(nn::load_checkpoint(dir + "/run/checkpoint.safetensors").step == 4);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("kill -9 at any moment loses at most the steps since the last checkpoint, never the checkpoint or its logs") {
    std::string dir = temp_dir("kill9"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    std::string cmd = "exec " + tiny_train(dir) + " --threads 1 --steps 1000000 --every 1 --resume --out " + dir + "/run >> " + dir + "/log 2>&1";
    int64_t last_step = 0;
    pid_t last_pid = 0;
    for (int round = 0; round < 4; round++) {  // killed at a different moment each time, mid-step or mid-write
        CAPTURE(round);
        pid_t pid = spawn_shell(cmd);
        last_pid = pid;
        auto saved_step = [&]() -> int64_t {  // the checkpoint's step, or -1 before the first one
            try {
                return nn::load_checkpoint(dir + "/run/checkpoint.safetensors").step;
            } catch (const Error&) {
                return -1;
            }
        };
        for (int i = 0; i < 600 && saved_step() <= last_step; i++) usleep(100 * 1000);  // this session has saved once
        usleep(useconds_t(60000 + 170000 * round));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        // what is there is whole: the checkpoint loads (its checksum holds), the logs parse, the grid
        // is a PNG (when one has been drawn: under the sanitizers two kills can both come between a
        // session's first checkpoint and its grid)
        nn::Checkpoint ck = nn::load_checkpoint(dir + "/run/checkpoint.safetensors");
        CHECK(ck.step >= last_step);
        last_step = ck.step;
        ddpm::TrainLog log;
        log.read_csv(dir + "/run/loss.csv", ck.step);
        if (file_exists(dir + "/run/samples.png")) CHECK(decode_png(read_file(dir + "/run/samples.png")).width > 0);
    }
    INFO(read_file(dir + "/log"));
    CHECK(last_step >= 1);
    // the temporary files a killed writer leaves (one made here for certain, with a dead pid) go at
    // the next start in that folder
    write_file_atomic(dir + "/run/loss.csv.tmp." + std::to_string(last_pid), "half a file");
    REQUIRE(run(tiny_train(dir) + " --threads 2 --resume --steps " + std::to_string(last_step + 1) + " --out " + dir + "/run", &out) == 0);
    CHECK(out.find("removed " + dir + "/run/loss.csv.tmp." + std::to_string(last_pid) + ", a temporary file left by a run that was killed") !=
          std::string::npos);
    for (const auto& f : std::filesystem::directory_iterator(dir + "/run")) CHECK(f.path().string().find(".tmp.") == std::string::npos);
    CHECK(nn::load_checkpoint(dir + "/run/checkpoint.safetensors").step == last_step + 1);
    CHECK(decode_png(read_file(dir + "/run/samples.png")).width > 0);  // the finished run drew its grid
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("train's sample grid honours --sampler: another sampler draws another grid, the same one the same grid") {
    std::string dir = temp_dir("train_sampler"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    const std::string common = tiny_train(dir) + " --threads 2 --T 50 --steps 2 --every 2 --ddim-steps 4";
    REQUIRE(run(common + " --sampler ddim --out " + dir + "/ddim", &out) == 0);
    CHECK(out.find("sample grid: ddim 4 steps, eta 0, 4 model evaluations per sample") != std::string::npos);
    REQUIRE(run(common + " --sampler dpm++2m --out " + dir + "/dpm", &out) == 0);
    CHECK(out.find("sample grid: dpm++2m 4 steps, 4 model evaluations per sample") != std::string::npos);
    REQUIRE(run(common + " --sampler dpm++2m --out " + dir + "/dpm2", &out) == 0);
    REQUIRE(run(common + " --sampler ddim --eta 1 --out " + dir + "/eta1", &out) == 0);
    const std::string ddim = read_file(dir + "/ddim/samples.png"), dpm = read_file(dir + "/dpm/samples.png");
    CHECK(ddim != dpm);
    CHECK(read_file(dir + "/dpm2/samples.png") == dpm);
    CHECK(read_file(dir + "/eta1/samples.png") != ddim);
    // the weights are the same in all three: only the sampler differs
    CHECK(read_file(dir + "/ddim/checkpoint.safetensors") == read_file(dir + "/dpm/checkpoint.safetensors"));
    CHECK(run(common + " --sampler dpm++2m --eta 1 --out " + dir + "/bad", &out) != 0);
    CHECK(out.find("--eta is ddim's; dpm++2m takes none") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}
