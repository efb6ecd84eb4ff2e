// nn: modules, parameter names, the U-Net against the reference's key list, a float64 gradcheck
// of the whole U-Net, activation names, and the optimizers against hand-computed steps.
// Gradchecks: float64, eps 1e-6, |analytic - numeric| <= 1e-8 + 1e-6 |numeric|.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "nn/optim.h"
#include "nn/unet.h"
#include "tensor/ops.h"
#include "tensor/rng.h"
#include "tests/tiny_unet.h"

using namespace dl;
using namespace dl::nn;
using dl::test::tiny_unet;

namespace {

Tensor rnd(Shape s, uint64_t seed, DType dt = DType::F32) {
    Philox g(seed);
    return randn(std::move(s), g, dt);
}

// "down.0.res.0.conv1.weight (32, 32, 3, 3)" lines and a final "parameters N", from the test folder.
struct RefParams {
    std::vector<std::pair<std::string, Shape>> keys;
    int64_t count = -1;
};
RefParams read_reference_parameters() {
    std::string file = __FILE__;
    std::string path = file.substr(0, file.find_last_of('/') + 1) + "unet_parameters.txt";
    std::ifstream in(path);
    if (!in) fail("cannot open ", path, " (run the tests from the repository root)");
    RefParams r;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string key;
        ls >> key;
        if (key == "parameters") {
            ls >> r.count;
            continue;
        }
        std::string dims = line.substr(line.find('(') + 1);
        Shape s;
        std::istringstream ds(dims);
        int64_t d;
        char sep;
        while (ds >> d) {
            s.push_back(d);
            ds >> sep;
        }
        r.keys.push_back({key, s});
    }
    return r;
}

}  // namespace

TEST_CASE("unet: the reference U-Net has the reference's 1,623,169 parameters, keys and shapes, in order") {
    RefParams ref = read_reference_parameters();
    REQUIRE(ref.keys.size() == 244);
    CHECK(ref.count == 1623169);
    UNet model(UNetConfig::reference());
    auto ps = model.named_parameters();
    CHECK(model.num_parameters() == 1623169);
    REQUIRE(ps.size() == ref.keys.size());
    for (size_t i = 0; i < ps.size(); i++) {
        INFO("parameter ", i);
        CHECK(ps[i].name == ref.keys[i].first);
        CHECK(shape_str(ps[i].var.shape()) == shape_str(ref.keys[i].second));
        CHECK(ps[i].var.name() == ps[i].name);  // named for gradient tables
        CHECK(ps[i].var.requires_grad());
    }
    CHECK(model.flat_parameters().numel() == 1623169);
}

TEST_CASE("unet: initialization is PyTorch's default, and the seed decides it") {
    UNet a(tiny_unet(), 1), b(tiny_unet(), 1), c(tiny_unet(), 2);
    CHECK(max_abs_diff(a.flat_parameters(), b.flat_parameters()) == 0);
    CHECK(max_abs_diff(a.flat_parameters(), c.flat_parameters()) > 0);
    for (const auto& p : a.named_parameters()) {
        INFO(p.name);
        const Tensor& v = p.var.value();
        bool is_norm = p.name.find("norm") != std::string::npos;
        if (is_norm) {
            double expect = p.name.ends_with(".weight") ? 1.0 : 0.0;
            for (int64_t i = 0; i < v.numel(); i++) CHECK(v.flat(i) == expect);
            continue;
        }
        // conv and linear, weight and bias alike: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        std::string wkey = p.name.substr(0, p.name.rfind('.')) + ".weight";
        Shape w;
        for (const auto& q : a.named_parameters())
            if (q.name == wkey) w = q.var.shape();
        int64_t fan_in = shape_numel(w) / w[0];
        double bound = 1 / std::sqrt(double(fan_in)), lo = 1e9, hi = -1e9;
        for (int64_t i = 0; i < v.numel(); i++) {
            lo = std::min(lo, v.flat(i));
            hi = std::max(hi, v.flat(i));
        }
        CHECK(lo >= -bound);
        CHECK(hi <= bound);
        if (v.numel() >= 500) CHECK(hi - lo > 1.9 * bound);  // spread over the whole interval
    }
}

TEST_CASE("unet: gradcheck of the whole U-Net in float64, every parameter tensor and the input") {
    UNet model(tiny_unet(4), 3);
    model.to(DType::F64);
    CHECK(model.dtype() == DType::F64);
    CHECK(model.flat_parameters().dtype() == DType::F64);
    // Biases and GroupNorm affine parameters start at constants that hide some paths; move them.
    {
        Philox g(11);
        Tensor& flat = model.flat_parameters();
        Tensor noise = randn(flat.shape(), g, DType::F64);
        axpy_(flat, 0.05, noise);
    }
    const int64_t B = 2;
    Variable x(rnd({B, 1, 8, 8}, 4, DType::F64), true, "input.x");
    Variable target(rnd({B, 1, 8, 8}, 5, DType::F64));
    std::vector<int64_t> t{3, 917};
    // Dropout (p = 0.1) stays on, with the same masks in every evaluation: a fresh generator each time.
    auto loss = [&]() {
        Philox dropout_gen(6);
        return mse_loss(model.forward(x, t, &dropout_gen), target);
    };
    std::vector<Variable> leaves = model.parameters();
    leaves.push_back(x);
    GradcheckOptions opt;
    opt.max_coords = 2;
    GradcheckReport r = gradcheck_leaves(loss, leaves, opt);
    INFO(r.str());
    CHECK(r.ok);
    REQUIRE(r.entries.size() == leaves.size());
    for (size_t i = 0; i < r.entries.size(); i++) {
        CHECK(r.entries[i].checked > 0);
        CHECK(r.entries[i].name == leaves[i].name());
    }
    // A gradient that some path does not reach would be zero everywhere: check none is.
    for (const Variable& p : leaves) {
        INFO(p.name());
        double s = 0;
        for (int64_t i = 0; i < p.numel(); i++) s += std::abs(p.grad().flat(i));
        CHECK(s > 0);
    }
}

TEST_CASE("unet: float64 and back keeps every value; grads and flat buffers follow the dtype") {
    UNet model(tiny_unet(), 7);
    Tensor before = model.flat_parameters().clone();
    model.to(DType::F64);
    CHECK(model.flat_grads().dtype() == DType::F64);
    for (const Variable& p : model.parameters()) CHECK(p.dtype() == DType::F64);
    model.to(DType::F32);
    CHECK(model.flat_parameters().dtype() == DType::F32);
    CHECK(max_abs_diff(model.flat_parameters(), before) == 0);
}

TEST_CASE("unet: forward shapes, eval is deterministic, dropout masks come from the caller's generator") {
    UNet model(tiny_unet(), 8);
    Variable x(rnd({2, 1, 8, 8}, 9));
    std::vector<int64_t> t{0, 999};
    Philox g1(5), g2(5);
    Variable a = model.forward(x, t, &g1), b = model.forward(x, t, &g2);
    CHECK(a.shape() == Shape{2, 1, 8, 8});
    CHECK(max_abs_diff(a.value(), b.value()) == 0);  // same generator state, same masks
    CHECK(g1.offset == g2.offset);
    CHECK(g1.offset > 0);
    Variable c = model.forward(x, t, &g1);  // the generator moved on: other masks
    CHECK(max_abs_diff(a.value(), c.value()) > 0);
    CHECK_THROWS_WITH_AS(model.forward(x, t), doctest::Contains("needs a Philox generator"), Error);

    model.eval();
    Variable e1 = model.forward(x, t), e2 = model.forward(x, t);
    CHECK(max_abs_diff(e1.value(), e2.value()) == 0);
    CHECK(max_abs_diff(e1.value(), a.value()) > 0);
    CHECK_THROWS_WITH_AS(model.forward(Variable(rnd({2, 1, 7, 7}, 1)), t), doctest::Contains("multiples of 2"), Error);
    CHECK_THROWS_WITH_AS(model.forward(x, {1}), doctest::Contains("1 timesteps for a batch of 2"), Error);
}

TEST_CASE("unet: intermediate Variables are named by module path and op, uniquely within a forward") {
    UNet model(tiny_unet(), 10);
    Variable x(rnd({2, 1, 8, 8}, 11), false, "input.x");
    Philox g(1);
    Variable out = model.forward(x, {5, 6}, &g);
    std::set<std::string> names;
    int64_t count = 0;
    for (const Variable& v : topological_order(out)) {
        CHECK_FALSE(v.name().empty());
        names.insert(v.name());
        count++;
    }
    CHECK(int64_t(names.size()) == count);  // unique
    for (const char* n : {"temb.sinusoidal", "temb.fc1.linear", "temb.silu", "conv_in.conv2d", "down.0.res.0.norm1.group_norm_silu",
                          "down.0.res.0.conv1.conv2d", "down.0.res.0.silu", "down.0.res.0.norm2.group_norm_silu",
                          "mid.attn.norm.group_norm",
                          "down.0.res.0.temb_proj.linear", "down.0.res.0.dropout.dropout", "down.0.downsample.conv2d",
                          "down.1.res.0.skip.conv2d", "down.1.attn.0.q", "down.1.attn.0.softmax", "mid.attn.softmax",
                          "mid.res1.conv2.conv2d", "up.1.res.0.concat", "up.1.res.1.concat", "up.1.upsample_nearest2d",
                          "up.1.upsample.conv2d", "up.0.res.1.conv2.conv2d", "norm_out.group_norm_silu", "conv_out.conv2d",
                          "down.0.res.0.conv1.weight", "mid.attn.qkv.bias", "input.x"}) {
        INFO(n);
        CHECK(names.count(n) == 1);
    }
    CHECK(out.name() == "conv_out.conv2d");
}

TEST_CASE("module: state_dict round trip, and strict loading names the key and both shapes") {
    UNet a(tiny_unet(), 1), b(tiny_unet(), 2);
    Variable x(rnd({2, 1, 8, 8}, 3));
    a.eval();
    b.eval();
    CHECK(max_abs_diff(a.forward(x, {1, 2}).value(), b.forward(x, {1, 2}).value()) > 0);
    b.load_state_dict(a.state_dict());
    CHECK(max_abs_diff(a.flat_parameters(), b.flat_parameters()) == 0);
    CHECK(max_abs_diff(a.forward(x, {1, 2}).value(), b.forward(x, {1, 2}).value()) == 0);
    CHECK(b.state_dict()[0].value.shares_storage(b.flat_parameters()));  // loaded in place

    StateDict missing = a.state_dict();
    missing.erase(missing.begin() + 4);  // conv_in.weight
    CHECK_THROWS_WITH_AS(b.load_state_dict(missing), doctest::Contains("missing key \"conv_in.weight\" (expected shape (8, 1, 3, 3))"), Error);

    StateDict wrong = a.state_dict();
    wrong[4].value = Tensor::zeros({8, 2, 3, 3});
    CHECK_THROWS_WITH_AS(b.load_state_dict(wrong),
                         doctest::Contains("shape mismatch for \"conv_in.weight\": expected (8, 1, 3, 3), found (8, 2, 3, 3)"), Error);

    StateDict extra = a.state_dict();
    extra.push_back({"foo.weight", Tensor::zeros({3})});
    CHECK_THROWS_WITH_AS(b.load_state_dict(extra), doctest::Contains("unexpected key \"foo.weight\" (shape (3))"), Error);

    // nothing was copied by the failed loads; a float64 state dict converts on load
    UNet c(tiny_unet(), 5);
    StateDict sd64;
    for (const auto& e : a.state_dict()) sd64.push_back({e.name, e.value.to(DType::F64)});
    c.load_state_dict(sd64);
    CHECK(max_abs_diff(a.flat_parameters(), c.flat_parameters()) == 0);
}

TEST_CASE("module: parameters and gradients are views of the flat buffers") {
    UNet model(tiny_unet(), 12);
    Tensor& flat = model.flat_parameters();
    for (const Variable& p : model.parameters()) CHECK(p.value().shares_storage(flat));
    Variable x(rnd({2, 1, 8, 8}, 13));
    model.eval();
    auto loss = [&] { return mse_loss(model.forward(x, {10, 20}), Variable(Tensor::zeros({2, 1, 8, 8}))); };
    loss().backward();
    Tensor g1 = model.flat_grads().clone();
    int64_t offset = 0;
    for (const auto& p : model.named_parameters()) {
        INFO(p.name);
        REQUIRE(p.var.grad().defined());
        CHECK(p.var.grad().shares_storage(model.flat_grads()));
        CHECK(max_abs_diff(p.var.grad().flatten(), g1.rows(offset, p.var.numel())) == 0);
        offset += p.var.numel();
    }
    loss().backward();  // accumulates
    Tensor g2 = model.flat_grads().clone();
    CHECK(max_abs_diff(g2, mul_scalar(g1, 2.0)) < 1e-6);

    // zero_grad on one parameter zeroes its slice in place and keeps it attached; zero_grad on the
    // model zeroes everything
    Variable w = model.parameters()[0];
    w.zero_grad();
    CHECK(w.grad().shares_storage(model.flat_grads()));
    Tensor g3 = model.flat_grads();
    for (int64_t i = 0; i < w.numel(); i++) CHECK(g3.flat(i) == 0);
    CHECK(g3.flat(w.numel()) == g2.flat(w.numel()));
    loss().backward();  // still accumulates into the flat buffer
    CHECK(max_abs_diff(model.flat_grads().rows(0, w.numel()), g1.rows(0, w.numel())) < 1e-6);
    model.zero_grad();
    CHECK(max_abs_diff(model.flat_grads(), Tensor::zeros(g1.shape())) == 0);

    // replacing a value instead of writing into it is caught
    w.value() = w.value().clone();
    CHECK_THROWS_WITH_AS(model.flat_parameters(), doctest::Contains("temb.fc1.weight no longer lives in the flat buffer"), Error);
}

TEST_CASE("unet: the timestep embedding divides by half - 1, as Ho et al.'s code") {
    Tensor e = timestep_embedding({0, 1, 500}, 8);  // half = 4: freq_i = 10000^(-i/3)
    REQUIRE(e.shape() == Shape{3, 8});
    for (int i = 0; i < 4; i++) {
        CHECK(e.at({0, i}) == 0);      // sin(0)
        CHECK(e.at({0, 4 + i}) == 1);  // cos(0)
    }
    CHECK(e.at({1, 3}) == doctest::Approx(std::sin(1e-4)).epsilon(1e-6));  // the last frequency is 1/10000
    CHECK(e.at({2, 0}) == doctest::Approx(std::sin(500.0)).epsilon(1e-4));
    CHECK(e.at({2, 5}) == doctest::Approx(std::cos(500.0 * std::pow(10000.0, -1.0 / 3))).epsilon(1e-4));
    CHECK_THROWS_AS(timestep_embedding({1}, 7), Error);
}

TEST_CASE("unet: UNetConfig text round trip and errors") {
    UNetConfig d = UNetConfig::reference();
    CHECK(d.str() == "in_ch=1 ch=32 ch_mult=1,2,2 num_res_blocks=2 attn_res=7 groups=8 dropout=0.1 resolution=28");
    CHECK(UNetConfig::parse(d.str()) == d);
    UNetConfig t = tiny_unet();
    t.attn_res = {};
    t.dropout = 0.123456789;
    CHECK(UNetConfig::parse(t.str()) == t);
    CHECK_THROWS_WITH_AS(UNetConfig::parse("ch=32 depth=3"), doctest::Contains("unknown key \"depth\""), Error);
    CHECK_THROWS_WITH_AS(UNetConfig::parse("ch=3x"), doctest::Contains("ch=3x"), Error);
    UNetConfig bad = tiny_unet();
    bad.groups = 3;
    CHECK_THROWS_WITH_AS(UNet(bad, 0), doctest::Contains("8 channels do not split into 3 groups"), Error);
}

TEST_CASE("unet: the attention block computes softmax(q^T k / sqrt(C)) over keys, applied to v") {
    // Recompute the block with plain loops from its own q, k, v and compare.
    Philox gen(1);
    Attention attn(4, 2, gen);
    Variable x(rnd({2, 4, 3, 2}, 2, DType::F32));
    Variable out = attn.forward(x);
    const int64_t B = 2, C = 4, HW = 6;
    Tensor qkv = attn.qkv.forward(attn.norm.forward(x)).value();  // (B, 3C, HW) in memory
    Tensor a({B, C, HW});
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < HW; i++) {
            auto at = [&](int64_t part, int64_t c, int64_t j) { return qkv.flat(((b * 3 + part) * C + c) * HW + j); };
            std::vector<double> w(HW);
            double mx = -1e30, sum = 0;
            for (int64_t j = 0; j < HW; j++) {
                double s = 0;
                for (int64_t c = 0; c < C; c++) s += at(0, c, i) * at(1, c, j);
                w[j] = s / std::sqrt(double(C));
                mx = std::max(mx, w[j]);
            }
            for (auto& wj : w) sum += (wj = std::exp(wj - mx));
            for (int64_t c = 0; c < C; c++) {
                double o = 0;
                for (int64_t j = 0; j < HW; j++) o += w[j] / sum * at(2, c, j);
                a.set_flat((b * C + c) * HW + i, o);
            }
        }
    Variable expect = x + attn.proj.forward(Variable(a.reshape({B, C, 3, 2})));
    CHECK(max_abs_diff(out.value(), expect.value()) < 1e-5);
}

// ---- optimizers -------------------------------------------------------------------------
namespace {
// torch.optim.Adam / AdamW, one element, written out as the documentation states it.
struct HandAdam {
    double m = 0, v = 0;
    int t = 0;
    double step(double p, double g, double lr, double wd, bool decoupled) {
        const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        t++;
        if (decoupled) p -= lr * wd * p;
        else g += wd * p;
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        double mhat = m / (1 - std::pow(b1, t)), vhat = v / (1 - std::pow(b2, t));
        return p - lr * mhat / (std::sqrt(vhat) + eps);
    }
};
}  // namespace

TEST_CASE("optim: Adam and AdamW agree with hand-computed steps") {
    for (bool decoupled : {false, true}) {
        for (double wd : {0.0, 0.1}) {
            for (DType dt : {DType::F64, DType::F32}) {
                INFO("decoupled ", decoupled, " weight_decay ", wd, " ", dtype_name(dt));
                std::vector<double> p0{1.0, -2.0, 0.5, 0.0};
                Tensor p = Tensor::from_vector(p0, {4}).to(dt);
                Adam adam(4, dt, AdamConfig{0.9, 0.999, 1e-8, wd, decoupled});
                std::vector<HandAdam> hand(4);
                std::vector<double> expect = p0;
                const double grads[3][4] = {{0.3, -0.1, 2.0, 1e-3}, {-0.2, -0.1, 1.0, 0}, {0.5, 0.4, -3.0, 0}};
                for (int s = 0; s < 3; s++) {
                    Tensor g = Tensor::from_vector(std::vector<double>(grads[s], grads[s] + 4), {4}).to(dt);
                    double lr = 1e-2 * (s + 1);
                    adam.step(p, g, lr);
                    for (int i = 0; i < 4; i++) expect[i] = hand[i].step(expect[i], grads[s][i], lr, wd, decoupled);
                }
                CHECK(adam.t == 3);
                double tol = dt == DType::F64 ? 1e-12 : 1e-6;
                for (int i = 0; i < 4; i++) CHECK(std::abs(p.flat(i) - expect[i]) < tol);
            }
        }
    }
    // The first Adam step moves each weight by lr * g / (|g| + eps): about lr in the gradient's sign.
    Tensor p = Tensor::from_vector(std::vector<double>{1.0, 1.0}, {2});
    Adam adam(2, DType::F64);
    adam.step(p, Tensor::from_vector(std::vector<double>{4.0, -1e-3}, {2}), 0.1);
    CHECK(p.flat(0) == doctest::Approx(1.0 - 0.1 * 4.0 / (4.0 + 1e-8)));
    CHECK(p.flat(1) == doctest::Approx(1.0 + 0.1 * 1e-3 / (1e-3 + 1e-8)));
    CHECK_THROWS_AS(adam.step(p, Tensor::zeros({3}, DType::F64), 0.1), Error);
}

TEST_CASE("optim: the EMA after k updates matches its closed form") {
    const double d = 0.9;
    Tensor p = Tensor::from_vector(std::vector<double>{1.0, -4.0}, {2});
    Ema ema(p, d);
    Tensor target = Tensor::from_vector(std::vector<double>{3.0, 2.0}, {2});
    for (int k = 1; k <= 5; k++) ema.update(target);
    // s_k = d^k s_0 + (1 - d^k) p for constant p
    for (int i = 0; i < 2; i++) CHECK(ema.shadow.flat(i) == doctest::Approx(std::pow(d, 5) * p.flat(i) + (1 - std::pow(d, 5)) * target.flat(i)));
    CHECK(ema.updates == 5);
    // with changing parameters p_1 .. p_k: s_k = d^k s_0 + sum_i (1 - d) d^(k - i) p_i
    Ema e2(Tensor::from_vector(std::vector<float>{0.f}, {1}), 0.5);
    double expect = 0;
    for (int i = 1; i <= 4; i++) {
        e2.update(Tensor::from_vector(std::vector<float>{float(i)}, {1}));
        expect += 0.5 * std::pow(0.5, 4 - i) * i;
    }
    CHECK(e2.shadow.flat(0) == doctest::Approx(expect));
    CHECK(ema.shadow.shares_storage(p) == false);  // a copy, not the parameters
}

TEST_CASE("optim: the power-function EMA weighs update s by s^gamma, so its average sits at a fixed fraction of the run") {
    // Karras et al. 2024: with decay (1 - 1/t)^(gamma + 1) the EMA of p_1 .. p_k is close to
    // sum s^gamma p_s / sum s^gamma. For p_s = s that is (gamma + 1) / (gamma + 2) k whatever k is,
    // where a fixed decay d lags a constant 1 / (1 - d) - 1 steps behind (so its share of a long
    // run shrinks, and a short run is mostly its initial weights).
    const double gamma = 6.94;
    CHECK(power_ema_decay(1, gamma) == 0.0);  // the first update copies the parameters
    CHECK_THROWS_WITH(power_ema_decay(0, gamma), doctest::Contains("t >= 1"));
    CHECK_THROWS_WITH(power_ema_decay(5, 0), doctest::Contains("gamma > 0"));
    for (int k : {100, 1000}) {
        Ema power(Tensor::from_vector(std::vector<double>{-50.0}, {1}), 0);
        Ema fixed(Tensor::from_vector(std::vector<double>{0.0}, {1}), 0.99);
        for (int s = 1; s <= k; s++) {
            Tensor p = Tensor::from_vector(std::vector<double>{double(s)}, {1});
            power.decay = power_ema_decay(s, gamma);
            power.update(p);
            fixed.update(p);
        }
        INFO("k = " << k);
        CHECK(power.shadow.flat(0) / k == doctest::Approx((gamma + 1) / (gamma + 2)).epsilon(k == 100 ? 0.01 : 0.001));
        if (k == 1000) CHECK(k - fixed.shadow.flat(0) == doctest::Approx(99).epsilon(0.01));  // 1 / (1 - d) - 1 behind
        else CHECK(fixed.shadow.flat(0) / k < 0.5);  // after 100 updates still dragged towards its initial weights
    }
}

TEST_CASE("optim: gradient clipping returns the norm before clipping and scales to max_norm") {
    Tensor g = Tensor::from_vector(std::vector<float>{3.f, 4.f, 0.f}, {3});
    CHECK(clip_grad_norm(g, 10.0) == doctest::Approx(5.0));
    CHECK(g.flat(0) == 3.f);  // below the limit: unchanged
    CHECK(clip_grad_norm(g, 1.0) == doctest::Approx(5.0));
    double coef = 1.0 / (5.0 + 1e-6);
    CHECK(g.flat(0) == doctest::Approx(3 * coef));
    CHECK(g.flat(1) == doctest::Approx(4 * coef));
    CHECK(std::sqrt(g.flat(0) * g.flat(0) + g.flat(1) * g.flat(1)) < 1.0);
}

TEST_CASE("optim: the learning rate warms up linearly, then stays or follows a half cosine to 0") {
    LrSchedule flat{1e-3, 100, LrDecay::None};
    CHECK(flat.at(1, 1000) == doctest::Approx(1e-5));  // the first update: base / warmup
    CHECK(flat.at(50, 1000) == doctest::Approx(5e-4));
    CHECK(flat.at(100, 1000) == doctest::Approx(1e-3));
    CHECK(flat.at(5000, 1000) == doctest::Approx(1e-3));
    CHECK(LrSchedule{1e-3, 0, LrDecay::None}.at(1, 10) == 1e-3);  // no warmup

    LrSchedule cosine{1e-3, 100, LrDecay::Cosine};
    CHECK(cosine.at(50, 1100) == flat.at(50, 1100));        // the warmup is the same
    CHECK(cosine.at(100, 1100) == doctest::Approx(1e-3));    // the decay starts at the top
    CHECK(cosine.at(600, 1100) == doctest::Approx(5e-4));    // half way down at half the decay
    CHECK(cosine.at(350, 1100) == doctest::Approx(1e-3 * (2 + std::sqrt(2.0)) / 4));  // a quarter of the way: cos^2(pi/8)
    CHECK(cosine.at(1100, 1100) == doctest::Approx(0).epsilon(1e-12));  // 0 at the last update
    for (int64_t s = 101; s <= 1100; s++) REQUIRE(cosine.at(s, 1100) < cosine.at(s - 1, 1100));
    CHECK(parse_lr_decay("cosine") == LrDecay::Cosine);
    CHECK_THROWS_WITH(parse_lr_decay("step"), "learning-rate decay: expected 'cosine' or 'none', got 'step'");
}
