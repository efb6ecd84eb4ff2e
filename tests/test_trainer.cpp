// The training run as library objects (ddpm/trainer.h): the step budget on a fake clock, a
// TrainState that saves, loads and refuses bad metadata naming the file and the key, a
// checkpoint written before TrainState existed, and checkpoints turned into ready models.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>

#include "autograd/ops.h"
#include "ddpm/trainer.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tensor/formats/safetensors.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;

namespace {

// The run tests/old_checkpoint.safetensors came from: 8 images of 16x16, a ch-4 U-Net with
// attention at 4x4, 3 steps of batch 2, seed 7 (written by apps/train.cpp's code before TrainState).
Dataset old_run_data() {
    IdxImages im{8, 16, 16, {}};
    for (int i = 0; i < 8 * 256; i++) im.pixels.push_back(uint8_t((i * 37) % 256));
    return Dataset(im);
}
TrainConfig old_run_config() {
    TrainConfig c;
    c.data_dir = "synthetic";
    c.batch = 2;
    c.lr.base = 1e-3;  // the defaults of the time: Adam at 1e-3, the fixed EMA
    c.ema_gamma = 0;
    c.seed = 7;
    c.model.ch = 4;
    c.model.ch_mult = {1, 2, 2};
    c.model.num_res_blocks = 1;
    c.model.groups = 2;
    c.model.dropout = 0;
    return c;
}
const std::string old_checkpoint = "tests/old_checkpoint.safetensors";

// One step of Algorithm 1 on the state, as Trainer::run takes it.
double train_step(TrainState& st) {
    Tensor x0 = st.data.next_batch(int(st.config.batch), st.data_gen);
    std::vector<int64_t> t = randint(st.config.batch, st.config.T, st.noise_gen);
    Tensor eps = randn(x0.shape(), st.noise_gen);
    st.model.zero_grad();
    Variable loss = training_loss(st.schedule, eps_model(st.model), x0, t, eps, &st.dropout_gen);
    loss.backward();
    st.update(st.config.lr.at(st.step + 1, st.config.steps));
    return loss.value().item();
}

double worst_diff(const nn::StateDict& a, const nn::StateDict& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); i++) {
        REQUIRE(a[i].name == b[i].name);
        worst = std::max(worst, max_abs_diff(a[i].value, b[i].value));
    }
    return worst;
}

// The checkpoint at `from` with one metadata value replaced, written to `to`.
void with_metadata(const std::string& from, const std::string& to, const std::string& key, const std::string& value) {
    Safetensors st = Safetensors::load(from);
    st.metadata[key] = value;
    st.save(to);
}

}  // namespace

TEST_CASE("StepBudget: a fixed count stays; --steps 0 is sized from the probe and refined once") {
    StepBudget fixed(500, 60, 0, 0, false);
    CHECK(fixed.sized());
    CHECK(fixed.steps() == 500);
    for (int64_t s = 1; s <= 300; s++) CHECK_FALSE(fixed.after_step(s, 0.5 * double(s)));
    CHECK(fixed.steps() == 500);
    CHECK_FALSE(fixed.out_of_time(1e9));  // no hard limit

    // 0.5 s a step, a 200 s budget from step 40 of a resumed run that spent 4 s before
    StepBudget b(0, 200, 4, 40, false);
    CHECK_FALSE(b.sized());
    CHECK(b.steps() == std::numeric_limits<int64_t>::max());
    int64_t step = 40, changes = 0;
    double clock = 0;
    auto run_to = [&](int64_t last, double per_step) {
        while (step < last) {
            step++;
            clock += per_step;
            changes += b.after_step(step, clock);
        }
    };
    run_to(40 + StepBudget::kWarm + StepBudget::kProbe, 0.5);
    REQUIRE(b.sized());
    CHECK(changes == 1);
    CHECK(b.seconds_per_step() == doctest::Approx(0.5));
    // 192 s usable (4% kept), 4 s spent before, 6 s in this session: 182 s left, 364 steps after step 52
    CHECK(b.steps() == 52 + 364);
    // the pace slows to 0.6 s: at 200 steps into the session the count is refined once, on the
    // pace since the probe
    run_to(40 + StepBudget::kRefine, 0.6);
    CHECK(changes == 2);
    double since_probe = 0.6 * double(StepBudget::kRefine - StepBudget::kWarm - StepBudget::kProbe);
    CHECK(b.seconds_per_step() == doctest::Approx(0.6));
    CHECK(b.steps() == 240 + int64_t((192 - 4 - (6 + since_probe)) / 0.6));
    CHECK(b.steps() < 52 + 364);
    run_to(400, 0.6);
    CHECK(changes == 2);  // never again

    // a hard limit stops when the earlier sessions and this one have spent the budget
    StepBudget limited(1000, 60, 50, 0, true);
    CHECK_FALSE(limited.out_of_time(9.9));
    CHECK(limited.out_of_time(10.1));
    CHECK_THROWS_WITH(StepBudget(0, 0, 0, 0, false), "StepBudget: sizing a run needs a positive time budget, got 0 s");

    // a machine so slow (3 s a step) that a 6 s hard limit is spent before the probe: the run is
    // sized to the steps it took, never left at "step 3 of 2^63 - 1"
    StepBudget slow(0, 6, 0, 0, true);
    CHECK_FALSE(slow.after_step(1, 3));
    CHECK_FALSE(slow.sized());
    CHECK(slow.after_step(2, 6.5));
    CHECK(slow.sized());
    CHECK(slow.steps() == 2);
    CHECK(slow.seconds_per_step() == doctest::Approx(3.25));
    CHECK_FALSE(slow.after_step(3, 9));  // (a run stops at its count; nothing changes after)
}

TEST_CASE("TrainState: saved and loaded, a run continues bit for bit") {
    std::string dir = test::temp_dir("trainstate");
    TrainConfig cfg = old_run_config();
    cfg.steps = 6;
    TrainState straight(cfg, old_run_data());
    for (int i = 0; i < 6; i++) train_step(straight);

    TrainState first(cfg, old_run_data());
    for (int i = 0; i < 3; i++) train_step(first);
    first.save(dir + "/ck.safetensors");
    TrainState resumed(cfg, old_run_data());
    resumed.load(dir + "/ck.safetensors");
    CHECK(resumed.step == 3);
    CHECK(resumed.data.cursor().pos == first.data.cursor().pos);
    for (int i = 0; i < 3; i++) train_step(resumed);
    CHECK(worst_diff(straight.model.state_dict(), resumed.model.state_dict()) == 0.0);
    CHECK(max_abs_diff(straight.ema.shadow, resumed.ema.shadow) == 0.0);
    CHECK(max_abs_diff(straight.adam.v, resumed.adam.v) == 0.0);

    // a sized run keeps its count: a state asked for 0 steps takes the checkpoint's
    TrainConfig unsized = cfg;
    unsized.steps = 0;
    TrainState again(unsized, old_run_data());
    again.load(dir + "/ck.safetensors");
    CHECK(again.config.steps == 6);

    // another model, schedule or T is refused
    TrainConfig wider = cfg;
    wider.model.ch = 8;
    TrainState other(wider, old_run_data());
    CHECK_THROWS_WITH(other.load(dir + "/ck.safetensors"), doctest::Contains("ck.safetensors: the checkpoint's model is 'in_ch=1 ch=4"));
    TrainConfig shorter = cfg;
    shorter.T = 50;
    TrainState other_t(shorter, old_run_data());
    CHECK_THROWS_WITH(other_t.load(dir + "/ck.safetensors"),
                      doctest::Contains("trained with the linear schedule and T = 1000, the flags ask for linear and T = 50"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("TrainState::load: metadata that do not parse, or are out of range, are named with the file") {
    std::string dir = test::temp_dir("trainmeta");
    TrainConfig cfg = old_run_config();
    TrainState st(cfg, old_run_data());
    train_step(st);
    st.save(dir + "/good.safetensors");
    struct Case { std::string key, value, message; };
    std::vector<Case> cases = {
        {"T", "1000x", "bad.safetensors: metadata 'T' is '1000x', expected an integer in [2, 1000000]"},
        {"T", "1", "metadata 'T' is '1', expected an integer in [2, 1000000]"},
        {"T", "99999999999999999999", "metadata 'T' is '99999999999999999999', expected an integer"},
        {"steps", "-5", "metadata 'steps' is '-5', expected an integer in [0, "},
        {"steps", " 7", "metadata 'steps' is ' 7', expected an integer"},
        {"data_cursor", "1 2 3", "metadata 'data_cursor' is '1 2 3', expected four unsigned integers"},
        {"data_cursor", "1 2 3 4 5", "metadata 'data_cursor' is '1 2 3 4 5', expected four unsigned integers"},
        {"data_cursor", "1 2 3 -4", "expected four unsigned integers"},
        {"data_cursor", "1  2 3 4", "expected four unsigned integers"},
        {"schedule", "quad", "bad.safetensors: metadata 'schedule': schedule: expected 'linear' or 'cosine', got 'quad'"},
        {"model", "ch=four", "bad.safetensors: metadata 'model': UNetConfig::parse: ch=four: expected a number"},
    };
    for (const Case& c : cases) {
        INFO(c.key, " = '", c.value, "'");
        with_metadata(dir + "/good.safetensors", dir + "/bad.safetensors", c.key, c.value);
        TrainState fresh(cfg, old_run_data());
        CHECK_THROWS_WITH(fresh.load(dir + "/bad.safetensors"), doctest::Contains(c.message.c_str()));
    }
    // the loss weighting, which load_model reads for inspect (a checkpoint without the key: uniform)
    CHECK(load_model(dir + "/good.safetensors", Weights::Trained).loss_weights.empty());
    for (const char* bad : {"min-snr", "min-snr:0", "min-snr:5x", "max-snr:5", "Uniform"}) {
        INFO(bad);
        with_metadata(dir + "/good.safetensors", dir + "/bad.safetensors", "loss_weight", bad);
        CHECK_THROWS_WITH(load_model(dir + "/bad.safetensors", Weights::Trained),
                          doctest::Contains(cat("bad.safetensors: metadata 'loss_weight' is '", bad, "', expected 'uniform' or 'min-snr:GAMMA'").c_str()));
    }
    with_metadata(dir + "/good.safetensors", dir + "/bad.safetensors", "loss_weight", "min-snr:2.5");
    DiffusionModel weighted = load_model(dir + "/bad.safetensors", Weights::Trained);
    CHECK(weighted.loss_weights == loss_weights(weighted.schedule, LossWeight::MinSnr, 2.5));
    // a missing key, too
    Safetensors no_cursor = Safetensors::load(dir + "/good.safetensors");
    no_cursor.metadata.erase("data_cursor");
    no_cursor.save(dir + "/bad.safetensors");
    TrainState fresh(cfg, old_run_data());
    CHECK_THROWS_WITH(fresh.load(dir + "/bad.safetensors"), doctest::Contains("bad.safetensors: metadata has no 'data_cursor'"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("a checkpoint written before TrainState existed still loads, continues and saves the same") {
    REQUIRE(file_exists(old_checkpoint));
    TrainConfig cfg = old_run_config();
    TrainState st(cfg, old_run_data());
    st.load(old_checkpoint);
    CHECK(st.step == 3);
    CHECK(st.config.steps == 3);  // the count it was trained to
    nn::Checkpoint old = nn::load_checkpoint(old_checkpoint);

    // The same run today, from scratch, gives the same state: bit for bit in the build that wrote
    // the file (-O3 on AVX-512), and within rounding elsewhere (the sanitizer build's -O1, another
    // SIMD level), which is far below how far 3 steps moved the weights from their init.
    TrainConfig now = cfg;
    now.steps = 3;
    TrainState replay(now, old_run_data()), init(now, old_run_data());
    for (int i = 0; i < 3; i++) train_step(replay);
    const double moved = worst_diff(old.model, init.model.state_dict());
    const double off = worst_diff(replay.model.state_dict(), old.model);
    const double off_ema = worst_diff(nn::capture(replay.model, &replay.adam, &replay.ema, 3).ema, old.ema);
    MESSAGE("replayed weights within ", off, " of the file's (3 steps moved them up to ", moved, ")");
    CHECK(moved > 0);
    CHECK(off <= 0.1 * moved);
    CHECK(off_ema <= 0.1 * moved);  // the EMA moves less, and by rounding's share; it can be no further off

    // Saved again, it has the same keys, tensors and metadata.
    std::string dir = test::temp_dir("oldckpt");
    st.save(dir + "/again.safetensors");
    Safetensors a = Safetensors::load(old_checkpoint), b = Safetensors::load(dir + "/again.safetensors");
    CHECK(a.metadata.count("data_crc32") == 0);  // written before checkpoints had a checksum
    REQUIRE(b.metadata.count("data_crc32") == 1);
    b.metadata.erase("data_crc32");
    CHECK(a.metadata == b.metadata);
    REQUIRE(a.entries().size() == b.entries().size());
    for (size_t i = 0; i < a.entries().size(); i++) {
        CHECK(a.entries()[i].name == b.entries()[i].name);
        CHECK(a.entries()[i].data == b.entries()[i].data);
    }
    // and it trains on
    st.config.steps = 4;
    CHECK(std::isfinite(train_step(st)));

    // the programs' loader reads it too: EMA or trained weights, its schedule
    DiffusionModel ema = load_model(old_checkpoint, Weights::Ema), raw = load_model(old_checkpoint, Weights::Trained);
    CHECK(ema.ema);
    CHECK_FALSE(raw.ema);
    CHECK(ema.schedule.T == 1000);
    CHECK(worst_diff(raw.net->state_dict(), old.model) == 0.0);
    CHECK(worst_diff(ema.net->state_dict(), old.ema) == 0.0);
    CHECK(worst_diff(ema.net->state_dict(), old.model) > 0.0);
    CHECK_FALSE(ema.net->is_training());
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("load_model: asking for EMA weights a checkpoint lacks, or a model that is not a checkpoint, fails clearly") {
    std::string dir = test::temp_dir("loadmodel");
    nn::Checkpoint ck = nn::load_checkpoint(old_checkpoint);
    ck.ema.clear();
    nn::save_checkpoint(dir + "/no_ema.safetensors", ck);
    CHECK_THROWS_WITH(load_model(dir + "/no_ema.safetensors", Weights::Ema), doctest::Contains("no_ema.safetensors: no EMA weights"));
    CHECK_FALSE(load_model(dir + "/no_ema.safetensors", Weights::EmaIfPresent).ema);
    CHECK(load_model(dir + "/no_ema.safetensors", Weights::Trained, 0.25).net->config().dropout == 0.25);
    // a model far larger than any checkpoint could hold is refused before it is allocated
    with_metadata(old_checkpoint, dir + "/huge.safetensors", "model", "ch=100000");
    CHECK_THROWS_WITH(load_model(dir + "/huge.safetensors", Weights::Trained),
                      doctest::Contains("huge.safetensors: metadata 'model': UNetConfig: ch (--ch) must be even and in [4, 1024], got 100000"));
    Safetensors bare;
    bare.add_i64("step", {1}, {});
    bare.save(dir + "/bare.safetensors");
    CHECK_THROWS_WITH(load_model(dir + "/bare.safetensors", Weights::Trained), doctest::Contains("bare.safetensors: metadata has no 'model'"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("a checkpoint carries a checksum of its tensor data: a flipped bit is reported, not trained on") {
    std::string dir = test::temp_dir("crc");
    TrainState st(old_run_config(), old_run_data());
    train_step(st);
    st.save(dir + "/ck.safetensors");
    CHECK_NOTHROW(nn::load_checkpoint(dir + "/ck.safetensors"));
    std::string bytes = read_file(dir + "/ck.safetensors");
    bytes[bytes.size() - 100] ^= 0x10;  // one bit of the last tensors' data
    write_file_atomic(dir + "/flipped.safetensors", bytes);
    CHECK_THROWS_WITH(nn::load_checkpoint(dir + "/flipped.safetensors"),
                      doctest::Contains("flipped.safetensors: the tensor data do not match their checksum (metadata 'data_crc32' is "));
    TrainState other(old_run_config(), old_run_data());
    CHECK_THROWS_WITH(other.load(dir + "/flipped.safetensors"), doctest::Contains("the file is damaged"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("load_checkpoint refuses non-finite weights and a negative Adam moment, naming the tensor") {
    std::string dir = test::temp_dir("finite");
    nn::Checkpoint ck = nn::load_checkpoint(old_checkpoint);
    nn::Checkpoint nan_ema = ck;
    nan_ema.ema[3].value = nan_ema.ema[3].value.clone();
    nan_ema.ema[3].value.set_flat(2, NAN);
    nn::save_checkpoint(dir + "/nan.safetensors", nan_ema);
    CHECK_THROWS_WITH(nn::load_checkpoint(dir + "/nan.safetensors"),
                      doctest::Contains(("nan.safetensors: tensor \"ema." + ck.ema[3].name + "\" has a non-finite value at element 2").c_str()));
    nn::Checkpoint negative = ck;
    negative.adam_v[0].value = negative.adam_v[0].value.clone();
    negative.adam_v[0].value.set_flat(0, -1e-3);
    nn::save_checkpoint(dir + "/neg.safetensors", negative);
    CHECK_THROWS_WITH(nn::load_checkpoint(dir + "/neg.safetensors"), doctest::Contains("has a negative second moment at element 0"));
    nn::Checkpoint no_t = ck;
    no_t.adam_t = 0;
    nn::save_checkpoint(dir + "/t.safetensors", no_t);
    CHECK_THROWS_WITH(nn::load_checkpoint(dir + "/t.safetensors"), doctest::Contains("\"adam.t\" is 0, expected a positive count"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("validate(): each field out of range is refused, naming the field and its flag; the library checks with it too") {
    struct Case {
        std::function<void(RunConfig&)> set;
        std::string message;
    };
    const std::vector<Case> cases = {
        {[](RunConfig& c) { c.train.steps = -1; }, "TrainConfig: steps (--steps) must be in [0, 1099511627776] (0: sized to a time budget), got -1"},
        {[](RunConfig& c) { c.train.batch = 0; }, "TrainConfig: batch (--batch) must be in [1, 1024], got 0"},
        {[](RunConfig& c) { c.train.lr.base = 0; }, "TrainConfig: lr.base (--lr) must be in [1e-09, 1], got 0"},
        {[](RunConfig& c) { c.train.lr.base = NAN; }, "TrainConfig: lr.base (--lr) must be in [1e-09, 1], got nan"},
        {[](RunConfig& c) { c.train.lr.warmup = -1; }, "TrainConfig: lr.warmup (--warmup) must be in [0, 1099511627776], got -1"},
        {[](RunConfig& c) { c.train.T = 1; }, "TrainConfig: T (--T) must be in [2, 1000000], got 1"},
        {[](RunConfig& c) { c.train.ema_decay = 1; }, "TrainConfig: ema_decay (--ema) must be in [0, 0.999999], got 1"},
        {[](RunConfig& c) { c.train.ema_gamma = INFINITY; }, "TrainConfig: ema_gamma (--ema-gamma) must be in [0, 1000] (0: the fixed --ema), got inf"},
        {[](RunConfig& c) { c.train.snr_gamma = -1; }, "TrainConfig: snr_gamma (--snr-gamma) must be in [0.001, 1000], got -1"},
        {[](RunConfig& c) { c.train.clip = 0; }, "TrainConfig: clip (--clip) must be in [1e-06, 1e+06], got 0"},
        {[](RunConfig& c) { c.train.p_uncond = 1; }, "TrainConfig: p_uncond (--p-uncond) must be in [0, 0.99], got 1"},
        {[](RunConfig& c) { c.train.model.num_classes = 256; }, "TrainConfig: model.num_classes (--classes) must be in [0, 255] (0: unconditional; IDX labels are bytes), got 256"},
        {[](RunConfig& c) { c.train.model.ch = 7; }, "UNetConfig: ch (--ch) must be even and in [4, 1024], got 7"},
        {[](RunConfig& c) { c.train.model.num_res_blocks = 5; }, "UNetConfig: num_res_blocks (--res-blocks) must be in [1, 4], got 5"},
        {[](RunConfig& c) { c.train.model.dropout = 1; }, "UNetConfig: dropout (--dropout) must be in [0, 0.99], got 1"},
        {[](RunConfig& c) { c.train.model.ch_mult = {}; }, "UNetConfig: ch_mult must have 1 to 5 levels, got 0"},
        {[](RunConfig& c) { c.train.model.ch_mult = {1, 2, 128}; }, "UNetConfig: each ch_mult must be in [1, 64] and ch (--ch) times it at most 1024"},
        {[](RunConfig& c) { c.train.model.in_ch = 0; }, "UNetConfig: in_ch must be in [1, 16], got 0"},
        {[](RunConfig& c) { c.train.model.resolution = 30; }, "UNetConfig: resolution 30 does not halve 2 times evenly"},
        {[](RunConfig& c) { c.minutes = 0; }, "RunConfig: minutes (--minutes) must be positive when train.steps (--steps) is 0"},
        {[](RunConfig& c) { c.train.steps = 5, c.minutes = -1; }, "RunConfig: minutes (--minutes) must be in [0, 1e+07], got -1"},
        {[](RunConfig& c) { c.every = 0; }, "RunConfig: every (--every) must be in [1, 1099511627776], got 0"},
        {[](RunConfig& c) { c.samples = 0; }, "RunConfig: samples (--samples) must be in [1, 1024], got 0"},
        {[](RunConfig& c) { c.train.T = 40; }, "RunConfig: ddim_steps (--ddim-steps) must be in [0, 40] (T; 0: the ancestral sampler over all T), got 50"},
        {[](RunConfig& c) { c.grad_norms_every = -1; }, "RunConfig: grad_norms_every (--grad-norms-every) must be in [0, 1099511627776] (0: off), got -1"},
        {[](RunConfig& c) { c.skip_nonfinite = -1; }, "RunConfig: skip_nonfinite (--skip-nonfinite) must be in [0, 1099511627776], got -1"},
        {[](RunConfig& c) { c.eval_every = -1; }, "RunConfig: eval_every (--eval-every) must be in [0, 1099511627776] (0: off), got -1"},
        {[](RunConfig& c) { c.eval_n = 3; }, "RunConfig: eval_n (--eval-n) must be in [4, 100000]"},
        {[](RunConfig& c) { c.eval_ddim_steps = -1; }, "RunConfig: eval_ddim_steps (--eval-ddim-steps) must be in [0, 1000] (T; 0: the ancestral sampler over all T), got -1"},
        {[](RunConfig& c) { c.sampler = "heun"; }, "RunConfig: sampler (--sampler): --sampler: expected ancestral, ddim, dpm++2m or dpm++2m-sde, got 'heun'"},
        {[](RunConfig& c) { c.sampler = "ancestral"; }, "RunConfig: sampler, eta (--sampler, --eta) of the sample grid (--ddim-steps): --ddim-steps: the ancestral sampler takes all T"},
        {[](RunConfig& c) { c.ema_snapshot_every = -1; }, "RunConfig: ema_snapshot_every (--ema-snapshot-every) must be in [0, 1099511627776] (0: off), got -1"},
        {[](RunConfig& c) { c.sampler = "dpm++2m", c.eta = 0.5; }, "RunConfig: sampler, eta (--sampler, --eta) of the sample grid (--ddim-steps): --eta is ddim's"},
    };
    CHECK_NOTHROW(RunConfig().validate());
    for (const Case& c : cases) {
        RunConfig cfg;
        c.set(cfg);
        INFO(c.message);
        CHECK(test::message_of([&] { cfg.validate(); }).find(c.message) == 0);
    }
    // the library refuses with the same words: a TrainState, a Trainer, a U-Net
    TrainConfig bad = old_run_config();
    bad.p_uncond = -0.5;
    CHECK(test::message_of([&] { TrainState st(bad, old_run_data()); }) == "TrainConfig: p_uncond (--p-uncond) must be in [0, 0.99], got -0.5");
    RunConfig run;
    run.every = 0;
    CHECK(test::message_of([&] { Trainer t(run); }) == "RunConfig: every (--every) must be in [1, 1099511627776], got 0");
    nn::UNetConfig wide;
    wide.num_res_blocks = 0;
    CHECK(test::message_of([&] { nn::UNet net(wide); }) == "UNetConfig: num_res_blocks (--res-blocks) must be in [1, 4], got 0");
}

TEST_CASE("the named configurations: the defaults are the measured recipe, 'cond' is make train-cond's model") {
    const TrainConfig d = TrainConfig::named("default"), c = TrainConfig::named("cond"), cond = TrainConfig::conditional();
    CHECK(d.str() == TrainConfig().str());
    CHECK(d.model == nn::UNetConfig());
    CHECK(c.str() == cond.str());
    CHECK(c.model == cond.model);
    CHECK_NOTHROW(d.validate());
    CHECK_NOTHROW(c.validate());
    // the conditional model: the reference U-Net's size without its dropout, 10 classes, Adam at 1e-3, the fixed EMA
    nn::UNetConfig ref = nn::UNetConfig::reference();
    CHECK(c.model.ch == ref.ch);
    CHECK(c.model.num_res_blocks == ref.num_res_blocks);
    CHECK(c.model.dropout == 0);
    CHECK(c.model.num_classes == 10);
    CHECK(c.str() == "data=data/mnist steps=0 batch=64 lr=0.001 warmup=100 lr_decay=cosine schedule=linear T=1000 ema=0.995 clip=1 seed=0 "
                     "classes=10 p_uncond=0.1");
    CHECK(d.str() == "data=data/mnist steps=0 batch=64 lr=0.002 warmup=100 lr_decay=cosine schedule=linear T=1000 ema=power:6.94 clip=1 seed=0");
    CHECK(test::message_of([] { TrainConfig::named("big"); }) == "TrainConfig: no configuration named 'big' (default or cond)");
}
