// Autograd: the backward engine, inspection, errors, and a gradcheck of every op.
// Gradchecks run in float64 with eps 1e-6; tolerance: |analytic - numeric| <= 1e-8 + 1e-6 |numeric|.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "autograd/anomaly.h"
#include "autograd/gradcheck.h"
#include "autograd/inspect.h"
#include "autograd/ops.h"
#include "autograd/profile.h"
#include "tensor/ops.h"
#include "tensor/rng.h"

using namespace dl;

namespace {

Tensor rnd(Shape s, uint64_t seed, double lo = -1, double hi = 1) {
    Philox g(seed);
    Tensor t = rand(std::move(s), g, DType::F64);
    for (int64_t i = 0; i < t.numel(); i++) t.set_flat(i, lo + (hi - lo) * t.flat(i));
    return t;
}

using Fn = std::function<Variable(const std::vector<Variable>&)>;

void expect_gradcheck(const Fn& f, const std::vector<Tensor>& inputs, GradcheckOptions opt = {}) {
    GradcheckReport r = gradcheck(f, inputs, opt);
    INFO(r.str());
    CHECK(r.ok);
    for (const auto& e : r.entries) CHECK(e.checked > 0);
}

}  // namespace

TEST_CASE("backward of a small expression matches the hand-computed gradient") {
    // f(a, b) = sum(a * b + exp(a)),  df/da = b + exp(a),  df/db = a
    Variable a(Tensor::from_vector(std::vector<double>{0.5, -1.0}, {2}), true, "a");
    Variable b(Tensor::from_vector(std::vector<double>{2.0, 3.0}, {2}), true, "b");
    Variable f = sum(a * b + exp(a));
    f.backward();
    CHECK(a.grad().flat(0) == doctest::Approx(2.0 + std::exp(0.5)));
    CHECK(a.grad().flat(1) == doctest::Approx(3.0 + std::exp(-1.0)));
    CHECK(b.grad().flat(0) == doctest::Approx(0.5));
    CHECK(b.grad().flat(1) == doctest::Approx(-1.0));
}

TEST_CASE("a Variable used twice receives the sum of both paths, and leaves accumulate across backward calls") {
    Variable x(Tensor::full({3}, 2.0, DType::F64), true);
    Variable y = sum(x * x);  // dy/dx = 2x
    y.backward();
    CHECK(x.grad().flat(0) == doctest::Approx(4.0));
    sum(x * 3.0).backward();
    CHECK(x.grad().flat(0) == doctest::Approx(7.0));
    x.zero_grad();
    CHECK_FALSE(x.grad().defined());
    // attach_grad hands backward an outside buffer (a view into a flat gradient, as nn::Module does)
    Tensor flat = Tensor::zeros({5}, DType::F64);
    x.attach_grad(flat.rows(1, 3));
    sum(x * 2.0).backward();
    CHECK(flat.flat(0) == 0.0);
    CHECK(flat.flat(1) == doctest::Approx(2.0));
    CHECK(flat.flat(3) == doctest::Approx(2.0));
    CHECK(flat.flat(4) == 0.0);
    CHECK_THROWS_WITH(x.attach_grad(Tensor::zeros({4}, DType::F64)), doctest::Contains("attach_grad: gradient float64 (4) for"));
    CHECK_THROWS_WITH((x * 2.0).attach_grad(Tensor::zeros({3}, DType::F64)), doctest::Contains("attach_grad: op 'mul_scalar'"));
}

TEST_CASE("a gradient passed on uncopied is never written through: an add's two inputs share dz until one gets more") {
    // a + b hands the same dz to a and b; a's second path (a mul's fresh result, or a kernel writing
    // into a's buffer) must make a its own buffer, whichever order backward visits them in
    for (int order = 0; order < 4; order++) {
        CAPTURE(order);
        Variable a(Tensor::full({4}, 0.5, DType::F64), true, "a"), b(Tensor::full({4}, -1.0, DType::F64), true, "b");
        Variable shared = sum(a + b);
        Variable other = order % 2 ? sum(silu(a)) : sum(a * 3.0);  // a kernel's write, or a product added
        Variable loss = order < 2 ? shared + other : other + shared;
        loss.backward();
        const double s = 1 / (1 + std::exp(-0.5)), da_other = order % 2 ? s * (1 + 0.5 * (1 - s)) : 3.0;
        for (int64_t i = 0; i < 4; i++) {
            CHECK(a.grad().flat(i) == doctest::Approx(1.0 + da_other));
            CHECK(b.grad().flat(i) == doctest::Approx(1.0));
        }
        CHECK(a.grad().data<double>() != b.grad().data<double>());
    }
    // a reshape passes a view of its output's gradient on; a second use of the input adds out of place
    Variable x(Tensor::full({2, 3}, 1.0, DType::F64), true, "x");
    Variable y = reshape(x, {6});
    Variable loss = sum(y * 2.0) + sum(x * x);
    loss.backward();
    CHECK(x.grad().flat(0) == doctest::Approx(4.0));
}

static bool same_bits(const Tensor& a, const Tensor& b) {
    return a.defined() && b.defined() && a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// float32 product and sum, each rounded once: the exact result in double (a product of two
// floats fits), then rounded to float. Written so that the compiler cannot fuse them into an FMA.
static float mul_f(float a, float b) { return float(double(a) * double(b)); }
static float add_f(float a, float b) { return float(double(a) + double(b)); }

TEST_CASE("float32 gradients bit for bit against the chain rule applied by hand, both orders of arrival") {
    // loss = sum(q + r), q = t * t, t = (a + b) * c (c broadcast over rows), r = a * 3: a is used
    // twice (the add, and the scalar multiply whose kernel adds into its buffer), t twice (both
    // factors of q), b and c once. sum(r + q) instead makes backward reach a's two parts in the
    // other order: one order adds the scalar multiply's part to the add's dz, which a shares
    // with b (copy on write); the other adds that dz to the multiply's part. Two parts sum to the
    // same float in either order, so one hand computation serves both.
    for (int order = 0; order < 2; order++) {
        CAPTURE(order);
        Variable a(rnd({2, 3}, 61).to(DType::F32), true, "a"), b(rnd({2, 3}, 62).to(DType::F32), true, "b"),
            c(rnd({3}, 63).to(DType::F32), true, "c");
        Variable s = a + b, t = s * c, q = t * t, r = a * 3.0;
        Variable loss = order ? sum(q + r) : sum(r + q);
        loss.backward();
        // By hand: d loss / dq = d loss / dr = 1; dt = t + t; ds = dt c; dc_j = sum_i dt_ij s_ij;
        // da = ds + 3; db = ds.
        const float *sv = s.value().data<float>(), *tv = t.value().data<float>(), *cv = c.value().data<float>();
        std::vector<float> da(6), db(6), dc(3);
        for (int j = 0; j < 3; j++) {
            float dt[2], ds[2];
            for (int i = 0; i < 2; i++) {
                dt[i] = add_f(tv[i * 3 + j], tv[i * 3 + j]);
                ds[i] = mul_f(dt[i], cv[j]);
                da[size_t(i * 3 + j)] = add_f(ds[i], 3.0f);
                db[size_t(i * 3 + j)] = ds[i];
            }
            dc[size_t(j)] = add_f(mul_f(dt[0], sv[j]), mul_f(dt[1], sv[3 + j]));
        }
        CHECK(same_bits(a.grad(), Tensor::from_vector(da, {2, 3})));
        CHECK(same_bits(b.grad(), Tensor::from_vector(db, {2, 3})));
        CHECK(same_bits(c.grad(), Tensor::from_vector(dc, {3})));
    }
}

TEST_CASE("float32 kernel gradients bit for bit: the first kernel to reach x writes its part, the next adds to it") {
    // x feeds group_norm_silu and silu, whose kernels write x's gradient when they are first and
    // add to it otherwise (where the add may fuse with the kernel's last multiply, so the order
    // shows in the bits). Backward runs the branch added last first: in norm + silu the silu
    // kernel writes and the norm kernel adds, in silu + norm the other way round. Expected, from
    // graphs of one op each: the first op's part alone, then the second op's kernel adding to a
    // gradient buffer that holds it already (attach_grad).
    const Tensor x0 = rnd({2, 4, 3, 3}, 71).to(DType::F32), w = rnd({2, 4, 3, 3}, 72).to(DType::F32);
    const Tensor gamma0 = rnd({4}, 73, 0.5, 1.5).to(DType::F32), beta0 = rnd({4}, 74).to(DType::F32);
    const Variable W(w);
    auto norm_branch = [&](const Variable& x, const Variable& g, const Variable& b) { return sum(group_norm(x, g, b, 2, 1e-5, true) * W); };
    auto silu_branch = [&](const Variable& x) { return sum(silu(x) * W); };

    // x's gradient from one branch alone, added to `onto` when given
    Tensor gamma_part, beta_part;
    auto alone = [&](bool norm, const Tensor& onto) {
        Variable x(x0.clone(), true), g(gamma0.clone(), true), b(beta0.clone(), true);
        if (onto.defined()) x.attach_grad(onto.clone());
        (norm ? norm_branch(x, g, b) : silu_branch(x)).backward();
        if (norm) gamma_part = g.grad(), beta_part = b.grad();
        return x.grad();
    };
    const Tensor silu_part = alone(false, Tensor()), norm_part = alone(true, Tensor());
    for (int order = 0; order < 2; order++) {
        CAPTURE(order);
        Variable x(x0.clone(), true), g(gamma0.clone(), true), b(beta0.clone(), true);
        Variable loss = order ? norm_branch(x, g, b) + silu_branch(x) : silu_branch(x) + norm_branch(x, g, b);
        loss.backward();
        CHECK(same_bits(x.grad(), order ? alone(true, silu_part) : alone(false, norm_part)));
        CHECK(same_bits(g.grad(), gamma_part));
        CHECK(same_bits(b.grad(), beta_part));
    }
    // and the sum is the right one: float64 finite differences
    expect_gradcheck([&](const std::vector<Variable>& v) {
        Variable W64(w.to(DType::F64));
        return sum(group_norm(v[0], v[1], v[2], 2, 1e-5, true) * W64) + sum(silu(v[0]) * W64);
    }, {x0.to(DType::F64), gamma0.to(DType::F64), beta0.to(DType::F64)});
}

TEST_CASE("intermediate gradients are freed unless retained; hooks see every gradient") {
    Variable x(Tensor::full({2}, 1.5, DType::F64), true, "x");
    Variable h = square(x);
    Variable k = exp(x);
    h.retain_grad();
    std::vector<std::string> seen;
    double hook_grad = 0;
    k.register_hook([&](const Variable& v, const Tensor& g) {
        seen.push_back(v.op());
        hook_grad = g.flat(0);
    });
    Variable out = sum(h * k);
    out.backward();
    CHECK(h.grad().defined());                     // retained: dout/dh = k
    CHECK(h.grad().flat(0) == doctest::Approx(std::exp(1.5)));
    CHECK_FALSE(k.grad().defined());               // freed
    CHECK(hook_grad == doctest::Approx(1.5 * 1.5));  // the hook saw dout/dk = h
    CHECK(seen == std::vector<std::string>{"exp"});

    set_retain_all_grads(true);
    Variable y = exp(x);
    Variable z = sum(y);
    z.backward();
    set_retain_all_grads(false);
    CHECK(y.grad().defined());
}

TEST_CASE("an OpProfile times and counts each op's forward and backward, with its FLOPs or bytes") {
    // x (2, 3, 5, 5) -> conv 3x3 pad 1 to 4 channels -> reshape (2, 100) -> matmul with m (100, 7)
    Variable x(rnd({2, 3, 5, 5}, 1), false), w(rnd({4, 3, 3, 3}, 2), true), m(rnd({100, 7}, 3), true);
    const double t0 = OpProfile::clock();
    double wall;
    std::map<std::string, OpTime> table;
    {
        OpProfile prof;
        CHECK(active_op_profile() == &prof);
        Variable y = matmul(reshape(conv2d(x, w, Variable(), 1, 1), {2, 100}), m);
        sum(y).backward();
        wall = OpProfile::clock() - t0;
        table = prof.table();
    }
    CHECK(active_op_profile() == nullptr);
    for (const char* k : {"conv2d forward", "conv2d backward", "reshape forward", "reshape backward", "matmul forward", "matmul backward",
                          "sum forward", "sum backward"}) {
        INFO(k);
        REQUIRE(table.count(k) == 1);
        CHECK(table[k].calls == 1);
        CHECK(table[k].seconds >= 0);
    }
    double seconds = 0;
    for (const auto& [k, t] : table) seconds += t.seconds;
    CHECK(seconds <= wall);
    // conv: 2 * (2*4*5*5 outputs) * (3*3*3 multiply-adds each) = 10800; its backward to the weight
    // only (x needs no gradient) as much again. matmul: 2 * (2*7) * 100 = 2800, backward to both
    // inputs (the reshape passes the conv's gradient on) twice that.
    CHECK(table["conv2d forward"].flops == 10800);
    CHECK(table["conv2d backward"].flops == 10800);
    CHECK(table["matmul forward"].flops == 2800);
    CHECK(table["matmul backward"].flops == 5600);
    // sum reads 14 doubles and writes one; a reshape moves nothing.
    CHECK(table["sum forward"].bytes == 15 * 8);
    CHECK(table["sum forward"].flops == 0);
    CHECK(table["reshape forward"].bytes == 0);

    // conv_shapes: the conv's rows carry its kernel, channels and resolution; the other ops' do not
    {
        OpProfile prof(true);
        sum(conv2d(x, w, Variable(), 2, 1)).backward();
        table = prof.table();
    }
    CHECK(table.count("conv2d 3x3 3->4 5x5->3x3 forward") == 1);
    CHECK(table.count("conv2d 3x3 3->4 5x5->3x3 backward") == 1);
    CHECK(table.count("conv2d forward") == 0);
    CHECK(table.count("sum forward") == 1);
}

TEST_CASE("no-grad scope records nothing") {
    Variable x(Tensor::ones({2}, DType::F64), true);
    NoGradGuard ng;
    Variable y = exp(x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.inputs().empty());
}

TEST_CASE("names follow the scope, and topological_order lists inputs before their users") {
    Variable x(Tensor::ones({2, 2}), true, "x");
    Variable y;
    {
        NameScope outer("mid");
        NameScope inner("attn");
        y = softmax(x);
    }
    CHECK(y.name() == "mid.attn.softmax");
    Variable z = sum(y);
    CHECK(z.name() == "sum");
    auto order = topological_order(z);
    REQUIRE(order.size() == 3);
    CHECK(order[0].name() == "x");
    CHECK(order[1].name() == "mid.attn.softmax");
    CHECK(order[2].op() == std::string("sum"));
}

TEST_CASE("errors name the op and the shapes or dtypes") {
    Variable a(Tensor::ones({2, 3}), true), b(Tensor::ones({4, 3}), true);
    CHECK_THROWS_WITH(add(a, b), "add: shapes (2, 3) and (4, 3) do not broadcast");
    CHECK_THROWS_WITH(matmul(a, b), "matmul: inner dimensions differ: (2, 3) x (4, 3)");
    Variable d(Tensor::ones({2, 3}, DType::F64), true);
    CHECK_THROWS_WITH(mul(a, d), "mul: dtypes differ: float32 (2, 3) and float64 (2, 3)");
    Variable y = exp(a);
    CHECK_THROWS_WITH(y.backward(), "backward: op 'exp' (exp) float32 (2, 3) is not a scalar; a non-scalar output needs a seed gradient of its shape");
    Variable s = sum(exp(a));
    s.backward();
    CHECK_THROWS_WITH(s.backward(), "backward: the graph of op 'sum' (sum) float32 () was freed by an earlier backward; pass keep_graph = true to the first one");
    Variable t = sum(exp(a));
    t.backward(true);
    t.backward();  // kept once, so a second pass works
    CHECK(a.grad().flat(0) == doctest::Approx(3 * std::exp(1.0)));  // s once and t twice, each d/da = e
}

TEST_CASE("backward from a non-scalar with a seed gradient") {
    Variable x(Tensor::from_vector(std::vector<double>{1, 2}, {2}), true);
    Variable y = x * 3.0;
    y.backward(Tensor::from_vector(std::vector<double>{1, 10}, {2}));
    CHECK(x.grad().flat(1) == doctest::Approx(30.0));
    CHECK_THROWS_WITH((x * 2.0).backward(Tensor::ones({3}, DType::F64)),
                      "backward: seed gradient is float64 (3), expected float64 (2)");
}

TEST_CASE("anomaly mode names the op that made a NaN, forward and backward") {
    set_detect_anomaly(true);
    Variable x(Tensor::from_vector(std::vector<double>{-1.0, 4.0}, {2}), true, "x");
    CHECK_THROWS_WITH(log(x), "detect_anomaly: forward of op 'log' (log) float64 (2): the output is non-finite: element 0 is NaN");
    Variable z(Tensor::from_vector(std::vector<double>{0.0, 4.0}, {2}), true, "z");
    Variable s = sum(sqrt(z));  // finite forward, infinite gradient at 0
    CHECK_THROWS_WITH(s.backward(), doctest::Contains("backward of op 'sqrt' (sqrt) float64 (2): the gradient of input 0, op 'leaf' (z) float64 (2) is non-finite"));
    set_detect_anomaly(false);
}

// ---- a gradcheck of every op, including broadcasting cases and a chain ----------------------

TEST_CASE("gradcheck: elementwise binary ops with broadcasting") {
    Shape shapes[][2] = {{{3, 4}, {3, 4}}, {{2, 3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{5}, {}}};
    for (auto& s : shapes) {
        CAPTURE(shape_str(s[0]));
        CAPTURE(shape_str(s[1]));
        Tensor a = rnd(s[0], 1), b = rnd(s[1], 2, 0.5, 2.0);  // b away from 0 for div
        expect_gradcheck([](auto& v) { return add(v[0], v[1]); }, {a, b});
        expect_gradcheck([](auto& v) { return sub(v[0], v[1]); }, {a, b});
        expect_gradcheck([](auto& v) { return mul(v[0], v[1]); }, {a, b});
        expect_gradcheck([](auto& v) { return div(v[0], v[1]); }, {a, b});
    }
    Tensor a = rnd({3, 2}, 3);
    expect_gradcheck([](auto& v) { return add(v[0], 1.5); }, {a});
    expect_gradcheck([](auto& v) { return mul(v[0], -2.5); }, {a});
    expect_gradcheck([](auto& v) { return neg(v[0]); }, {a});
}

TEST_CASE("gradcheck: unary ops") {
    Tensor x = rnd({4, 5}, 4), pos = rnd({4, 5}, 5, 0.2, 3.0);
    expect_gradcheck([](auto& v) { return exp(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return log(v[0]); }, {pos});
    expect_gradcheck([](auto& v) { return sqrt(v[0]); }, {pos});
    expect_gradcheck([](auto& v) { return sin(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return cos(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return tanh(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return sigmoid(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return silu(mul(v[0], 4.0)); }, {x});
    expect_gradcheck([](auto& v) { return square(v[0]); }, {x});
}

TEST_CASE("gradcheck: reductions") {
    Tensor x = rnd({2, 3, 4}, 6);
    expect_gradcheck([](auto& v) { return sum(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return sum(v[0], {1}); }, {x});
    expect_gradcheck([](auto& v) { return sum(v[0], {0, -1}, true); }, {x});
    expect_gradcheck([](auto& v) { return mean(v[0], {2}); }, {x});
    expect_gradcheck([](auto& v) { return mean(v[0]); }, {x});
    expect_gradcheck([](auto& v) { return max(v[0], {1}); }, {x});  // random values: no ties
    expect_gradcheck([](auto& v) { return max(v[0], {}, true); }, {x});
}

TEST_CASE("gradcheck: matmul and bmm with every transpose combination, and linear") {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            CAPTURE(ta);
            CAPTURE(tb);
            Tensor a = rnd(ta ? Shape{4, 3} : Shape{3, 4}, 7), b = rnd(tb ? Shape{5, 4} : Shape{4, 5}, 8);
            expect_gradcheck([ta, tb](auto& v) { return matmul(v[0], v[1], ta, tb); }, {a, b});
            Tensor ba = rnd(ta ? Shape{2, 4, 3} : Shape{2, 3, 4}, 9), bb = rnd(tb ? Shape{2, 5, 4} : Shape{2, 4, 5}, 10);
            expect_gradcheck([ta, tb](auto& v) { return bmm(v[0], v[1], ta, tb); }, {ba, bb});
        }
    expect_gradcheck([](auto& v) { return linear(v[0], v[1], v[2]); }, {rnd({3, 4}, 11), rnd({5, 4}, 12), rnd({5}, 13)});
    expect_gradcheck([](auto& v) { return linear(v[0], v[1], Variable()); }, {rnd({1, 4}, 11), rnd({2, 4}, 12)});
}

TEST_CASE("gradcheck: layout ops") {
    Tensor x = rnd({2, 3, 4}, 14), y = rnd({2, 2, 4}, 15);
    expect_gradcheck([](auto& v) { return reshape(v[0], {6, -1}); }, {x});
    expect_gradcheck([](auto& v) { return concat({v[0], v[1]}, 1); }, {x, y});
    expect_gradcheck([](auto& v) { return concat({v[0], v[0]}, -1); }, {x});
    expect_gradcheck([](auto& v) { return slice(v[0], 2, 1, 3); }, {x});
    expect_gradcheck([](auto& v) { return permute(v[0], {2, 0, 1}); }, {x});
    expect_gradcheck([](auto& v) { return gather(v[0], {3, 0, 3, 1}); }, {rnd({5, 2}, 16)});
}

TEST_CASE("gradcheck: mse_loss and softmax") {
    expect_gradcheck([](auto& v) { return mse_loss(v[0], v[1]); }, {rnd({2, 1, 3, 3}, 17), rnd({2, 1, 3, 3}, 18)});
    expect_gradcheck([](auto& v) { return softmax(mul(v[0], 3.0)); }, {rnd({3, 7}, 19)});
}

TEST_CASE("gradcheck: conv2d with 1x1 and 3x3 kernels, stride 1 and 2, padding, odd sizes") {
    struct Case { Shape x, w; int64_t stride, pad; bool bias; };
    Case cases[] = {
        {{2, 3, 5, 5}, {4, 3, 3, 3}, 1, 1, true},
        {{1, 1, 7, 6}, {2, 1, 3, 3}, 2, 1, true},   // 1 input channel, stride 2, odd size
        {{2, 3, 4, 4}, {1, 3, 3, 3}, 1, 0, false},  // 1 output channel, no padding, no bias
        {{2, 4, 3, 3}, {3, 4, 1, 1}, 1, 0, true},   // 1x1
    };
    for (const Case& c : cases) {
        CAPTURE(shape_str(c.x));
        CAPTURE(shape_str(c.w));
        std::vector<Tensor> in{rnd(c.x, 20), rnd(c.w, 21)};
        if (c.bias) in.push_back(rnd({c.w[0]}, 22));
        expect_gradcheck([c](auto& v) { return conv2d(v[0], v[1], c.bias ? v[2] : Variable(), c.stride, c.pad); }, in);
    }
    Variable x(Tensor::ones({1, 2, 5, 5}), true), w(Tensor::ones({3, 4, 3, 3}), true);
    CHECK_THROWS_WITH(conv2d(x, w, Variable(), 1, 1), "conv2d: expected x (B, Cin, H, W) and weight (Cout, Cin, KH, KW), got (1, 2, 5, 5) and (3, 4, 3, 3)");
}

TEST_CASE("gradcheck: group_norm, upsample_nearest2d, dropout") {
    expect_gradcheck([](auto& v) { return group_norm(v[0], v[1], v[2], 2); }, {rnd({2, 4, 3, 3}, 23), rnd({4}, 24, 0.5, 1.5), rnd({4}, 25)});
    expect_gradcheck([](auto& v) { return group_norm(v[0], v[1], v[2], 1); }, {rnd({1, 3, 2, 5}, 26), rnd({3}, 27), rnd({3}, 28)});
    // GroupNorm and SiLU in one op: in float64 the activation's derivative is recomputed in backward
    // (float reads the sigmoid off the output: the test below)
    expect_gradcheck([](auto& v) { return group_norm(v[0], v[1], v[2], 2, 1e-5, true); },
                     {rnd({2, 4, 3, 3}, 29), rnd({4}, 30, 0.5, 1.5), rnd({4}, 31)});
    expect_gradcheck([](auto& v) { return upsample_nearest2d(v[0]); }, {rnd({2, 3, 3, 2}, 29)});
    // dropout draws a new mask per call, so the check uses a generator reset to the same state
    expect_gradcheck([](auto& v) { Philox g(5); return dropout(v[0], 0.3, g); }, {rnd({4, 6}, 30)});
    Philox g(1);
    Variable ones(Tensor::ones({10000}), false);
    Tensor y = dropout(ones, 0.25, g).value();
    double kept = 0, mean_v = 0;
    for (double v : y.to_vector()) { kept += v != 0; mean_v += v; }
    CHECK(kept / 10000 == doctest::Approx(0.75).epsilon(0.03));
    CHECK(mean_v / 10000 == doctest::Approx(1.0).epsilon(0.03));
    CHECK(dropout(ones, 0.25, g, false).value().shares_storage(ones.value()));
}

TEST_CASE("group_norm_silu in float32: gradients within float rounding of float64's") {
    // float's backward reads the sigmoid off the node's output (y / z), float64's recomputes exp(-z):
    // the two must agree, which they would not if the output kept for backward were the wrong buffer
    const Tensor x64 = rnd({2, 8, 7, 7}, 40, -3, 3), g64 = rnd({8}, 41, 0.5, 1.5), b64 = rnd({8}, 42),
                 w64 = rnd({2, 8, 7, 7}, 43);
    std::map<DType, std::vector<Tensor>> grads;
    for (DType dt : {DType::F32, DType::F64}) {
        Variable x(x64.to(dt), true), g(g64.to(dt), true), b(b64.to(dt), true), w(w64.to(dt), false);
        sum(group_norm(x, g, b, 4, 1e-5, true) * w).backward();
        grads[dt] = {x.grad().to(DType::F64), g.grad().to(DType::F64), b.grad().to(DType::F64)};
    }
    for (size_t i = 0; i < 3; i++) {
        const Tensor &a = grads[DType::F32][i], &e = grads[DType::F64][i];
        double err = 0, scale = 0;
        for (int64_t j = 0; j < e.numel(); j++)
            err = std::max(err, std::abs(a.flat(j) - e.flat(j))), scale = std::max(scale, std::abs(e.flat(j)));
        INFO("gradient ", i, " (x, gamma, beta): max error ", err, " of scale ", scale);
        CHECK(err <= 1e-5 * scale);
    }
}

TEST_CASE("gradcheck: a chain of several ops, like a tiny attention block") {
    // softmax(q k^T / sqrt(d)) v with a residual and a GroupNorm in front, summed through mse
    auto block = [](const std::vector<Variable>& v) {
        Variable x = v[0];  // (1, 4, 2, 3): B=1, C=4, 6 positions
        Variable h = group_norm(x, v[1], v[2], 2);
        Variable flat = reshape(h, {4, 6});
        Variable q = matmul(v[3], flat), k = matmul(v[4], flat), val = matmul(v[5], flat);  // (4, 6)
        Variable w = softmax(mul(matmul(q, k, true, false), 1.0 / 2.0));                    // (6, 6)
        Variable o = matmul(val, w, false, true);                                            // (4, 6)
        Variable y = add(x, reshape(o, {1, 4, 2, 3}));
        return mse_loss(silu(y), tanh(x));
    };
    expect_gradcheck(block, {rnd({1, 4, 2, 3}, 31), rnd({4}, 32), rnd({4}, 33), rnd({4, 4}, 34), rnd({4, 4}, 35), rnd({4, 4}, 36)});
}

TEST_CASE("gradcheck fails on a wrong gradient") {
    // A deliberately wrong backward: claims d(x^2)/dx = x instead of 2x.
    auto wrong_square = [](const std::vector<Variable>& v) {
        Variable x = v[0];
        return make_result("wrong_square", square(x.value()), {x}, [x](const Tensor& dy) {
            auto [dx, accumulate] = x.grad_slot();
            if (accumulate) add_(dx, mul(dy, x.value()));
            else dx = mul(dy, x.value());
        });
    };
    GradcheckReport r = gradcheck(wrong_square, {rnd({3}, 37)});
    CHECK_FALSE(r.ok);
    CHECK(r.entries[0].max_rel_err > 0.3);
    CHECK_THROWS_WITH(gradcheck(wrong_square, {Tensor::ones({2})}), "gradcheck: input 0 is float32; finite differences need float64");
}

TEST_CASE("gradcheck: avg_pool2d and cross_entropy, and their values from a hand computation") {
    expect_gradcheck([](auto& v) { return avg_pool2d(v[0], 2); }, {rnd({2, 3, 5, 7}, 31)});  // odd sides: floor mode
    expect_gradcheck([](auto& v) { return avg_pool2d(v[0], 3); }, {rnd({1, 2, 6, 6}, 32)});
    Variable x(Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}), true);
    Tensor y = avg_pool2d(x, 2).value();  // one window: (1 + 2 + 4 + 5) / 4; row and column 3 dropped
    CHECK(y.shape() == Shape{1, 1, 1, 1});
    CHECK(y.item() == 3.0);

    std::vector<int64_t> labels{2, 0, 1};
    expect_gradcheck([&](auto& v) { return cross_entropy(v[0], labels); }, {rnd({3, 4}, 33, -3, 3)});
    // -log softmax: for logits (0, log 3), label 1: softmax = (1/4, 3/4), loss = -log(3/4)
    Variable z(Tensor::from_vector(std::vector<double>{0, std::log(3.0)}, {1, 2}), true);
    CHECK(cross_entropy(z, {1}).value().item() == doctest::Approx(-std::log(0.75)));
    // large logits do not overflow: the log-sum-exp subtracts the maximum
    Variable big(Tensor::from_vector(std::vector<double>{1000, 0}, {1, 2}), true);
    CHECK(cross_entropy(big, {0}).value().item() == doctest::Approx(0).epsilon(1e-12));
    // the fused op equals its composition from primitives, -mean(log(softmax(z))[label]), value and gradient
    Tensor logits = rnd({3, 4}, 34, -3, 3);
    Variable za(logits.clone(), true), zb(logits.clone(), true);
    Variable fused = cross_entropy(za, labels);
    Variable composed = neg(mean(gather(reshape(log(softmax(zb)), {12}), {0 * 4 + 2, 1 * 4 + 0, 2 * 4 + 1})));
    CHECK(fused.value().item() == doctest::Approx(composed.value().item()).epsilon(1e-12));
    fused.backward();
    composed.backward();
    CHECK(max_abs_diff(za.grad(), zb.grad()) < 1e-12);
    CHECK_THROWS_WITH(cross_entropy(z, {2}), "cross_entropy: label 2 is outside [0, 2)");
    CHECK_THROWS_WITH(cross_entropy(z, {0, 1}), "cross_entropy: expected logits (B, K) and B labels, got (1, 2) and 2 labels");
    CHECK_THROWS_WITH(avg_pool2d(x, 4), "avg_pool2d: expected (B, C, H, W) with H, W >= k >= 1, got (1, 1, 3, 3) and k = 4");
}
