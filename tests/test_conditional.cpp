// Class-conditional DDPM with classifier-free guidance (Ho & Salimans 2022): the label embedding
// in the U-Net, label dropout at the rate asked, the guided combination of the two passes, a tiny
// model that learns two classes so that its samples are the class asked for, the train program
// resuming bit for bit with labels, and labels that do not fit refused.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"
#include "ddpm/eval/eval.h"
#include "ddpm/inspect.h"
#include "ddpm/trainer.h"
#include "nn/checkpoint.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;
using namespace dl::test;

namespace {

nn::UNetConfig tiny_conditional(int64_t classes) {
    nn::UNetConfig c;
    c.ch = 8;
    c.ch_mult = {1, 2};
    c.num_res_blocks = 1;
    c.attn_res = {};
    c.groups = 2;
    c.dropout = 0;
    c.resolution = 8;
    c.num_classes = classes;
    return c;
}

std::vector<double> values(const Variable& v) {
    Tensor t = v.value().to(DType::F64);
    return std::vector<double>(t.data<double>(), t.data<double>() + t.numel());
}

// Two classes of 8x8 images: 0 bright on the left half, 1 bright on the right half, with a little
// noise. Which half is brighter tells the class, so a sample is judged by construction.
Dataset halves(int64_t n, Philox& gen) {
    IdxImages im{n, 8, 8, {}};
    std::vector<uint8_t> labels;
    Tensor noise = rand({n * 64}, gen);
    for (int64_t i = 0; i < n; i++) {
        labels.push_back(uint8_t(i % 2));
        for (int64_t p = 0; p < 64; p++) {
            bool left = p % 8 < 4, bright = (i % 2 == 0) == left;
            im.pixels.push_back(uint8_t((bright ? 200 : 20) + 30 * noise.data<float>()[i * 64 + p]));
        }
    }
    return Dataset(im, labels);
}
double left_minus_right(const Tensor& x, int64_t i) {  // x (N, 1, 8, 8)
    Tensor f = x.to(DType::F64);
    double d = 0;
    for (int64_t p = 0; p < 64; p++) d += (p % 8 < 4 ? 1 : -1) * f.data<double>()[i * 64 + p];
    return d / 32;
}

}  // namespace

TEST_CASE("the label embedding: label_emb.weight of num_classes + 1 rows, and the unconditional model as it was") {
    nn::UNet cond(tiny_conditional(3), 1), uncond(tiny_conditional(0), 1);
    const nn::ParamSlot* emb = nullptr;
    for (const nn::ParamSlot& s : cond.layout())
        if (s.name == "label_emb.weight") emb = &s;
    REQUIRE(emb != nullptr);
    CHECK(emb->shape == Shape{4, 4 * 8});  // 3 classes + the null label, tdim = 4 ch
    CHECK(cond.num_parameters() == uncond.num_parameters() + 4 * 32);
    for (const nn::ParamSlot& s : uncond.layout()) CHECK(s.name.find("label") == std::string::npos);
    CHECK(uncond.config().str().find("num_classes") == std::string::npos);  // old checkpoints' "model" text unchanged
    CHECK(nn::UNetConfig::parse(cond.config().str()) == cond.config());

    Philox gen{2};
    Variable x(randn({2, 1, 8, 8}, gen));
    std::vector<int64_t> t{5, 90}, a{0, 1}, b{2, 3}, bad{0, 4};
    CHECK(max_abs_diff(cond.forward(x, t, nullptr, &a).value(), cond.forward(x, t, nullptr, &b).value()) > 1e-4);  // the label matters
    CHECK(message_of([&] { cond.forward(x, t, nullptr, &bad); }).find("index 4 at position 1 is outside [0, 4)") != std::string::npos);
    CHECK(message_of([&] { cond.forward(x, t); }).find("needs one label per image") != std::string::npos);
    CHECK(message_of([&] { uncond.forward(x, t, nullptr, &a); }).find("unconditional") != std::string::npos);
}

TEST_CASE("label dropout replaces labels by the null label at the rate asked") {
    std::vector<int64_t> labels(20000, 3);
    for (double p : {0.0, 0.1, 0.5, 1.0}) {
        Philox gen{11};
        std::vector<int64_t> out = drop_labels(labels, p, 10, gen);
        int64_t nulls = 0, kept = 0;
        for (int64_t c : out) nulls += c == 10, kept += c == 3;
        CHECK(nulls + kept == 20000);
        double rate = double(nulls) / 20000, sd = std::sqrt(p * (1 - p) / 20000);
        INFO("p ", p, " rate ", rate);
        CHECK(std::abs(rate - p) <= 4 * sd + 1e-12);
    }
    Philox gen{1};
    CHECK(message_of([&] { drop_labels(labels, 1.5, 10, gen); }).find("p_uncond must be in [0, 1]") != std::string::npos);
}

TEST_CASE("guidance: w = 0 is the conditional eps; otherwise (1 + w) eps(c) - w eps(null), checked by hand") {
    nn::UNet net(tiny_conditional(3), 4);
    Philox gen{5};
    Variable x(randn({3, 1, 8, 8}, gen));
    std::vector<int64_t> t{1, 500, 999}, c{2, 0, 1}, null(3, net.null_label());
    std::vector<double> cond = values(net.forward(x, t, nullptr, &c)), uncond = values(net.forward(x, t, nullptr, &null));

    CHECK(values(eps_model(net, c, 0)(x, t, nullptr)) == cond);   // one pass, the conditional model alone
    CHECK(values(eps_model(net, {}, 0)(x, t, nullptr)) == uncond);  // no labels: the null label
    for (double w : {0.5, 3.0}) {
        std::vector<double> guided = values(eps_model(net, c, w)(x, t, nullptr));
        REQUIRE(guided.size() == cond.size());
        double worst = 0;
        for (size_t i = 0; i < cond.size(); i++) {
            double by_hand = cond[i] + w * (cond[i] - uncond[i]);  // the same formula rearranged
            worst = std::max(worst, std::abs(guided[i] - by_hand));
        }
        INFO("w ", w);
        CHECK(worst < 1e-5);  // float32 rounding of one batch of 6 against two batches of 3
    }
    nn::UNet plain(tiny_conditional(0), 4);
    CHECK(message_of([&] { eps_model(plain, c, 1); }).find("unconditional") != std::string::npos);
}

TEST_CASE("--class labels: a class, all classes in order, and what does not fit") {
    CHECK(class_labels("", 5, 3, "f") == std::vector<int64_t>{});
    CHECK(class_labels("2", 3, 3, "f") == std::vector<int64_t>{2, 2, 2});
    CHECK(class_labels("all", 6, 3, "f") == std::vector<int64_t>{0, 0, 1, 1, 2, 2});
    CHECK(class_labels("all", 7, 3, "f") == std::vector<int64_t>{0, 0, 0, 1, 1, 1, 2});
    CHECK(message_of([] { class_labels("3", 2, 3, "sample: --class"); }).find("sample: --class expects 'all' or a class in [0, 3), got '3'") !=
          std::string::npos);
    CHECK(message_of([] { class_labels("1x", 2, 3, "f"); }).find("got '1x'") != std::string::npos);
    CHECK(message_of([] { class_labels("1", 2, 0, "f"); }).find("unconditional") != std::string::npos);
}

TEST_CASE("the gradient reaching the label embedding matches finite differences in float64") {
    nn::UNet net(tiny_conditional(3), 8);
    Schedule s = make_schedule(ScheduleKind::Linear, 100);
    Philox gen{9};
    InspectBatch b = make_batch(synthetic_batch(2, 8, gen), 100, -1, gen);
    GradcheckOptions opt;
    opt.max_coords = 6;
    GradcheckReport r = gradcheck_training_loss(s, net, eps_model(net, {1, 3}), b, 1, opt, "label_emb");
    INFO(r.str());
    REQUIRE(r.entries.size() == 1);  // label_emb.weight alone
    CHECK(r.ok);
}

TEST_CASE("a tiny conditional model learns two classes: its samples are the class asked for") {
    Philox gen{1};
    TrainConfig c;
    c.data_dir = "halves";
    c.batch = 16;
    c.steps = 1000;
    c.lr = {3e-3, 20, nn::LrDecay::Cosine};
    c.T = 200;
    c.model = tiny_conditional(2);
    c.ema_decay = 0.9;
    c.ema_gamma = 0;  // the fixed decay above
    c.p_uncond = 0.2;
    TrainState st(c, halves(32, gen));
    st.model.train();
    while (st.step < c.steps) {
        std::vector<int64_t> labels;
        Tensor x0 = st.data.next_batch(int(c.batch), st.data_gen, &labels);
        std::vector<int64_t> t = randint(c.batch, c.T, st.noise_gen);
        Tensor eps = randn(x0.shape(), st.noise_gen);
        labels = drop_labels(labels, c.p_uncond, st.model.null_label(), st.noise_gen);
        st.model.zero_grad();
        training_loss(st.schedule, eps_model(st.model, labels), x0, t, eps, &st.dropout_gen).backward();
        st.update(c.lr.at(st.step + 1, c.steps));
    }
    st.model.eval();
    std::vector<int64_t> asked{0, 1, 0, 1, 0, 1, 0, 1};
    for (double w : {0.0, 2.0}) {
        Philox noise{42};
        Tensor x = ddim_sample(st.schedule, eps_model(st.model, asked, w), {8, 1, 8, 8}, 20, 0.0, noise);
        int right = 0;
        std::string margins;
        for (int64_t i = 0; i < 8; i++) {
            right += (left_minus_right(x, i) > 0) == (asked[size_t(i)] == 0);
            margins += cat(" ", left_minus_right(x, i));
        }
        MESSAGE("w ", w, ": left - right brightness", margins);
        INFO("w ", w);
        CHECK(right == 8);
    }
}

TEST_CASE("train --classes: resumes bit for bit, and refuses labels that are missing or do not fit") {
    std::string dir = temp_dir("train_cond"), out;
    write_synthetic_idx(dir + "/data", 80, 3);  // labels 0..5; the judge needs 64 or more
    std::string common = build_dir() + "/train --data " + dir + "/data --ch 8 --batch 4 --samples 4 --ddim-steps 2 --threads 2 --seed 5 --classes 6";
    REQUIRE(run(common + " --steps 4 --every 4 --out " + dir + "/straight", &out) == 0);
    INFO(out);
    REQUIRE(run(common + " --steps 4 --every 2 --minutes 1e-9 --out " + dir + "/resumed", &out) == 0);  // stops after 1 step
    REQUIRE(run(common + " --steps 4 --every 2 --resume --out " + dir + "/resumed", &out) == 0);
    nn::Checkpoint a = nn::load_checkpoint(dir + "/straight/checkpoint.safetensors");
    nn::Checkpoint b = nn::load_checkpoint(dir + "/resumed/checkpoint.safetensors");
    CHECK(a.step == 4);
    CHECK(a.meta("model").find("num_classes=6") != std::string::npos);
    CHECK(a.meta("train").find("classes=6 p_uncond=0.1") != std::string::npos);
    REQUIRE(a.model.size() == b.model.size());
    double worst = 0;
    for (size_t i = 0; i < a.model.size(); i++) worst = std::max(worst, max_abs_diff(a.model[i].value, b.model[i].value));
    CHECK(worst == 0.0);

    // sample asks for a class; eval reports the judge's accuracy on the classes asked for
    REQUIRE(run(build_dir() + "/sample --checkpoint " + dir + "/straight/checkpoint.safetensors --n 6 --class all --guidance 1 --ddim-steps 2 --out " +
                    dir + "/s.npy --png ''", &out) == 0);
    CHECK(run(build_dir() + "/sample --checkpoint " + dir + "/straight/checkpoint.safetensors --n 2 --class 6 --out " + dir + "/t.npy", &out) == 1);
    CHECK(out.find("expects 'all' or a class in [0, 6), got '6'") != std::string::npos);

    // eval: the judge's accuracy on the classes asked for, and the FID of each class
    REQUIRE(run(build_dir() + "/eval --threads 2 --data " + dir + "/data --checkpoint " + dir +
                    "/straight/checkpoint.safetensors --n 12 --ddim-steps 2 --bpd-n 0 --guidance 1 --json", &out) == 0);
    CHECK(out.find("\"guidance\": 1, \"class_accuracy\": ") != std::string::npos);
    CHECK(out.find("\"fid_per_class\": [") != std::string::npos);

    // labels out of range, and no labels at all
    CHECK(run(common + " --steps 1 --classes 3 --out " + dir + "/few", &out) == 1);
    CHECK(out.find(dir + "/data/train-labels-idx1-ubyte: label 3 of image 3 is outside [0, 3) (--classes 3)") != std::string::npos);
    CHECK(!file_exists(dir + "/few/checkpoint.safetensors"));
    std::remove((dir + "/data/train-labels-idx1-ubyte").c_str());
    CHECK(run(common + " --steps 1 --out " + dir + "/none", &out) == 1);
    CHECK(out.find("--classes 6 needs a label per image, and " + dir + "/data/train-labels-idx1-ubyte is missing") != std::string::npos);
    CHECK(run(common + " --steps 1 --p-uncond 1 --out " + dir + "/p", &out) == 1);
    CHECK(out.find("train: --p-uncond expects a number in [0, 0.99], got '1'") != std::string::npos);
}

TEST_CASE("the judge scores asked-for classes: accuracy on the labels asked for, and FID per class") {
    Philox gen{4};
    std::vector<uint8_t> train_labels, test_labels;
    IdxImages train_images = synthetic_images(300, 28, gen, &train_labels), test_images = synthetic_images(60, 28, gen, &test_labels);
    Dataset train(train_images, train_labels), test(test_images, test_labels);
    Judge judge = load_or_train_judge(temp_dir("judge_classes"), train, test, 60);
    std::vector<int64_t> idx, asked, wrong;
    for (int64_t i = 0; i < 120; i++) idx.push_back(i), asked.push_back(train_labels[size_t(i)]), wrong.push_back((train_labels[size_t(i)] + 1) % 6);
    Tensor images = train.images(idx);
    ClassMetrics right = judge.score_classes(images, asked), off = judge.score_classes(images, wrong);
    MESSAGE("accuracy on the true labels ", right.overall_accuracy, ", on shifted ones ", off.overall_accuracy);
    CHECK(right.overall_accuracy > 0.9);
    CHECK(off.overall_accuracy < 0.1);
    for (int64_t k = 0; k < 6; k++) {
        CHECK(right.n[size_t(k)] == 20);  // synthetic shapes come in turn
        CHECK(std::isfinite(right.fid[size_t(k)]));
        CHECK(right.fid[size_t(k)] < off.fid[size_t(k)]);  // a class's images are nearer its own reference digits
    }
    REQUIRE(right.n.size() == 6);  // the judge knows the classes of its training labels
    ClassMetrics some = judge.score_classes(images.rows(0, 5), {0, 1, 2, 3, 4});
    CHECK(some.n[5] == 0);
    CHECK(std::isnan(some.accuracy[5]));
    CHECK(std::isnan(some.fid[0]));  // one sample is no distribution
    CHECK(message_of([&] { judge.score_classes(images, std::vector<int64_t>(120, 6)); }).find("label 6 is outside the judge's classes [0, 6)") !=
          std::string::npos);
}
