// Inspection: graph order and kinds, the statistics table, the DOT graph (one node per op), the
// safetensors dump (every parameter and gradient, equal to what backward produced), anomaly mode
// naming the op, the float64 gradcheck of the DDPM loss passing on a tiny U-Net and failing on a
// deliberately wrong backward, the per-t sweep, per-parameter gradient norms, and build/inspect
// (and train's --grad-norms-every) run as programs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/anomaly.h"
#include "autograd/inspect.h"
#include "autograd/ops.h"
#include "ddpm/data.h"
#include "ddpm/inspect.h"
#include "ddpm/trainer.h"
#include "nn/checkpoint.h"
#include "ddpm/report/grad_norm_log.h"
#include "nn/unet.h"
#include "tensor/cpu.h"
#include "tensor/formats/io.h"
#include "tests/programs.h"
#include "tensor/ops.h"
#include "tests/tiny_unet.h"

using namespace dl;
using namespace dl::test;

namespace {

const std::string tiny_flags = "--model '" + tiny_unet(4).str() + "' --T 100";  // build/inspect's fresh init of the same model

ddpm::InspectBatch tiny_batch(int64_t B, int64_t T, uint64_t seed) {
    Philox gen(seed);
    return ddpm::make_batch(ddpm::synthetic_batch(B, 8, gen), T, -1, gen);
}

// y = 2x with a WRONG backward, dx = 3 dy: what gradcheck is there to catch.
Variable wrong_double(const Variable& x) {
    return make_result("wrong_double", mul_scalar(x.value(), 2.0), {x}, [x](const Tensor& dy) {
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, mul_scalar(dy, 3.0));
        else dx = mul_scalar(dy, 3.0);
    });
}

// The identity whose backward plants a NaN in the gradient: what anomaly mode is there to catch.
Variable nan_grad(const Variable& x) {
    return make_result("nan_grad", x.value().clone(), {x}, [x](const Tensor& dy) {
        auto [dx, accumulate] = x.grad_slot();
        if (accumulate) add_(dx, dy);
        else dx = dy.clone();
        dx.set_flat(0, NAN);
    });
}

size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
    return n;
}

}  // namespace

TEST_CASE("inspect: graph order puts each leaf before its first use; kinds; find_node") {
    Variable x(Tensor::from_vector(std::vector<float>{0.5f, -1.0f}, {2}), false, "x");
    Variable w(Tensor::from_vector(std::vector<float>{2.0f, 3.0f}, {2}), true, "w");
    Variable loss = sum(silu(x * w));
    std::vector<Variable> order = graph_order(loss);
    REQUIRE(order.size() == 5);
    std::vector<std::string> names, kinds;
    for (const Variable& v : order) names.push_back(v.name()), kinds.push_back(node_kind(v));
    CHECK(names == std::vector<std::string>{"x", "w", "mul", "silu", "sum"});
    CHECK(kinds == std::vector<std::string>{"input", "param", "act", "act", "act"});
    CHECK(find_node(loss, "silu").impl() == order[3].impl());
    CHECK_THROWS_WITH(find_node(loss, "sil"), "find_node: no node named 'sil' among the 5 nodes of the graph (e.g. silu)");

    TensorStats s = tensor_stats(Tensor::from_vector(std::vector<double>{1, 2, 3, -4}, {4}));
    CHECK(s.mean == doctest::Approx(0.5));
    CHECK(s.std == doctest::Approx(std::sqrt(7.25)));
    CHECK(s.max_abs == 4);
    CHECK(s.l2 == doctest::Approx(std::sqrt(30.0)));
    CHECK(!tensor_stats(Tensor::from_vector(std::vector<double>{1, NAN}, {2})).finite);
}

TEST_CASE("inspect: the table has a row per node with its gradient; the DOT graph a node per op") {
    Variable x(Tensor::from_vector(std::vector<float>{0.5f, -1.0f}, {2}), false, "x");
    Variable w(Tensor::from_vector(std::vector<float>{2.0f, 3.0f}, {2}), true, "w");
    RetainAllGrads keep;
    Variable loss = sum(silu(x * w));
    std::vector<Variable> order = graph_order(loss);
    loss.backward(/*keep_graph=*/true);
    std::vector<NodeStats> rows = node_stats(order);
    REQUIRE(rows.size() == 5);
    CHECK(!rows[0].has_grad);  // the input x needs none
    for (size_t i = 1; i < 5; i++) CHECK(rows[i].has_grad);
    CHECK(rows[1].grad.l2 == doctest::Approx(tensor_stats(w.grad()).l2));
    CHECK(rows[4].grad.l2 == doctest::Approx(1.0));  // d loss / d loss
    std::string table = stats_table(rows);
    CHECK(count(table, "\n") == 6);  // header + 5 rows
    CHECK(table.find("silu") != std::string::npos);

    std::string dot = graph_dot(order);
    CHECK(dot.rfind("digraph", 0) == 0);
    CHECK(count(dot, "shape=box") == 3);      // mul, silu, sum
    CHECK(count(dot, "shape=ellipse") == 2);  // x, w
    CHECK(count(dot, " -> ") == 4);           // x->mul, w->mul, mul->silu, silu->sum
}

TEST_CASE("inspect: the dump of a tiny U-Net holds every parameter and gradient, equal to backward's") {
    nn::UNet model(tiny_unet(4), 1);
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear, 100);
    ddpm::InspectBatch b = tiny_batch(2, 100, 2);
    ddpm::Inspection in = ddpm::inspect_training_loss(sched, model, ddpm::eps_model(model), b, 7);
    Safetensors st = Safetensors::parse(ddpm::inspection_dump(in, model, sched, 7).serialize());

    CHECK(st.i64("input.t") == b.t);
    CHECK(max_abs_diff(st.tensor("input.x0"), b.x0) == 0);
    CHECK(max_abs_diff(st.tensor("input.eps"), b.eps) == 0);
    CHECK(max_abs_diff(st.tensor("input.xt"), ddpm::q_sample(sched, b.x0, b.t, b.eps)) == 0);
    CHECK(st.tensor("loss").item() == in.loss.value().item());
    CHECK(st.metadata.at("model") == tiny_unet(4).str());

    // The same step again, on an identical model, with a plain backward: the gradients the dump
    // holds are what backward produces, bit for bit.
    nn::UNet twin(tiny_unet(4), 1);
    Philox gen(7);
    twin.zero_grad();
    ddpm::training_loss(sched, ddpm::eps_model(twin), b.x0, b.t, b.eps, &gen).backward();
    auto params = model.named_parameters(), twins = twin.named_parameters();
    int64_t n_param = 0;
    for (size_t i = 0; i < params.size(); i++) {
        INFO(params[i].name);
        REQUIRE(st.contains("param." + params[i].name));
        REQUIRE(st.contains("grad." + params[i].name));
        CHECK(max_abs_diff(st.tensor("param." + params[i].name), params[i].var.value()) == 0);
        CHECK(max_abs_diff(st.tensor("grad." + params[i].name), params[i].var.grad()) == 0);
        CHECK(max_abs_diff(st.tensor("grad." + params[i].name), twins[i].var.grad()) == 0);
        CHECK(tensor_stats(twins[i].var.grad()).l2 > 0);
        n_param++;
    }
    // every activation and its gradient, under its unique name
    int64_t n_act = 0;
    for (const Variable& v : in.nodes) {
        if (!is_op_node(v)) continue;
        INFO(v.name());
        CHECK(max_abs_diff(st.tensor("act." + v.name()), v.value()) == 0);
        CHECK(max_abs_diff(st.tensor("grad.act." + v.name()), v.grad()) == 0);
        n_act++;
    }
    CHECK(n_act > 50);
    CHECK(int64_t(st.entries().size()) == 5 + 2 * n_param + 2 * n_act);
    // the graph: one DOT box per recorded op, counted here from the raw topological order
    int64_t ops = 0, leaves = 0;
    for (const Variable& v : topological_order(in.loss)) (is_op_node(v) ? ops : leaves)++;
    std::string dot = graph_dot(in.nodes);
    CHECK(int64_t(count(dot, "shape=box")) == ops);
    CHECK(int64_t(count(dot, "shape=ellipse")) == leaves);
    CHECK(ops == n_act);
}

TEST_CASE("inspect: anomaly mode names the op, its module path, and the value that went non-finite") {
    nn::UNet model(tiny_unet(4), 1);
    ddpm::InspectBatch b = tiny_batch(1, 100, 3);
    Variable w = model.named_parameters()[0].var;  // the first parameter, temb.fc1.weight
    REQUIRE(w.name() == "temb.fc1.weight");
    set_detect_anomaly(true);
    w.value().set_flat(5, NAN);  // a NaN injected into a parameter
    Philox gen(4);
    CHECK_THROWS_WITH(model.forward(Variable(b.x0), b.t, &gen),
                      doctest::Contains("forward of op 'linear' (temb.fc1.linear) float32 (1, 16): the output is non-finite: element 1 is NaN; "
                                        "its input 1, op 'leaf' (temb.fc1.weight) float32 (16, 4), was non-finite already: element 5 is NaN"));
    w.value().set_flat(5, 0.1);

    // A NaN made by a backward: the message names that op and its module path.
    Variable x(randn({3}, gen), true, "x");
    Variable y;
    {
        NameScope scope("probe");
        y = sum(nan_grad(silu(x)));
    }
    CHECK_THROWS_WITH(y.backward(), doctest::Contains("backward of op 'nan_grad' (probe.nan_grad) float32 (3): the gradient of input 0, "
                                                      "op 'silu' (probe.silu) float32 (3) is non-finite: element 0 is NaN"));
    set_detect_anomaly(false);
}

TEST_CASE("inspect: the float64 gradcheck of the DDPM loss passes on a tiny U-Net and fails on a wrong backward") {
    nn::UNet model(tiny_unet(4), 1);
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear, 100);
    ddpm::InspectBatch b = tiny_batch(1, 100, 5);
    Tensor before = model.flat_parameters().clone();
    GradcheckOptions opt;
    opt.max_coords = 1;
    int64_t evals = 0, total = 0;
    // The middle attention block's 6 parameters (test_nn checks every one, at a cost the
    // sanitizer build feels): the loss is the whole model's, with dropout masks upstream that
    // must be the same in every evaluation.
    opt.on_eval = [&](int64_t d, int64_t t) { evals = d, total = t; };
    GradcheckReport good = ddpm::gradcheck_training_loss(sched, model, ddpm::eps_model(model), b, 9, opt, "mid.attn");
    INFO(good.str());
    CHECK(good.ok);
    REQUIRE(good.entries.size() == 6);
    CHECK(good.entries[0].name == "mid.attn.norm.weight");
    CHECK(evals == total);
    CHECK(total == 1 + 2 * int64_t(good.entries.size()));
    // the model is back in float32 with the same values (float32 -> float64 -> float32 is exact)
    CHECK(model.dtype() == DType::F32);
    CHECK(max_abs_diff(model.flat_parameters(), before) == 0);

    ddpm::EpsModel wrong = [&](const Variable& xt, const std::vector<int64_t>& t, Philox* g) { return wrong_double(model.forward(xt, t, g)); };
    GradcheckReport bad = ddpm::gradcheck_training_loss(sched, model, wrong, b, 9, opt, "conv_");  // conv_in, conv_out
    INFO(bad.str());
    CHECK(!bad.ok);
    int64_t failed = 0;
    for (const GradcheckEntry& e : bad.entries) failed += !e.ok;
    CHECK(failed > int64_t(bad.entries.size()) / 2);  // every path to the loss goes through it
    CHECK_THROWS_WITH(ddpm::gradcheck_training_loss(sched, model, wrong, b, 9, opt, "nothing"),
                      "gradcheck_training_loss: no parameter key contains 'nothing'");
}

TEST_CASE("inspect: the per-t sweep and per-parameter gradient norms") {
    nn::UNet model(tiny_unet(4), 1);
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear, 100);
    ddpm::InspectBatch b = tiny_batch(2, 100, 6);
    std::vector<ddpm::PerTRow> rows = ddpm::per_t_sweep(sched, model, ddpm::eps_model(model), b.x0, b.eps, 4, 3);
    REQUIRE(rows.size() == 4);
    for (size_t k = 0; k < 4; k++) {
        CHECK(rows[k].t_lo == int64_t(k) * 25);
        CHECK(rows[k].t_hi == int64_t(k + 1) * 25);
        CHECK(rows[k].t_mean >= double(rows[k].t_lo));
        CHECK(rows[k].t_mean < double(rows[k].t_hi));
        CHECK(rows[k].loss > 0);
        CHECK(rows[k].grad_norm > 0);
    }
    CHECK_THROWS_WITH(ddpm::per_t_sweep(sched, model, ddpm::eps_model(model), b.x0, b.eps, 0, 3), "per_t_sweep: buckets must be in [1, T = 100], got 0");

    // The last sweep's gradients are in the flat buffer: the log's norms are each slice's norm.
    ddpm::GradNormLog log(model);
    log.record(10, model.flat_grads());
    log.record(20, model.flat_grads());
    auto params = model.named_parameters();
    REQUIRE(log.rows.size() == 2);
    REQUIRE(log.rows[0].norms.size() == params.size());
    for (size_t k = 0; k < params.size(); k++) CHECK(log.rows[0].norms[k] == doctest::Approx(tensor_stats(params[k].var.grad()).l2));
    std::string dir = temp_dir("gradnorms");
    log.write_csv(dir + "/g.csv");
    log.write_svg(dir + "/g.svg", "gradient norms");
    CHECK(count(read_file(dir + "/g.svg"), "<polyline") >= 1);  // the largest norms' curves
    ddpm::GradNormLog back(model);
    back.read_csv(dir + "/g.csv", 15);  // a resume at step 15 keeps the rows up to it
    REQUIRE(back.rows.size() == 1);
    CHECK(back.rows[0].step == 10);
    CHECK(back.rows[0].norms[3] == doctest::Approx(log.rows[0].norms[3]).epsilon(1e-5));
    nn::UNet other(nn::UNetConfig{}, 0);  // another model's columns
    ddpm::GradNormLog wrong(other);
    CHECK_THROWS_WITH(wrong.read_csv(dir + "/g.csv", 100),
                      doctest::Contains(cat("line 1: expected the header 'step' and the ", other.named_parameters().size(), " parameter keys").c_str()));
    std::string csv = read_file(dir + "/g.csv");
    write_file_atomic(dir + "/bad.csv", csv.substr(0, csv.find('\n') + 1) + "10,0.5,x\n");  // a malformed row
    CHECK_THROWS_WITH(back.read_csv(dir + "/bad.csv", 100),
                      doctest::Contains(cat("bad.csv: line 2: expected ", params.size() + 1, " comma-separated numbers, found '10,0.5,x'").c_str()));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("inspect: build/inspect writes a dump, a DOT graph and the per-t curves that parse; bad input fails clearly") {
    std::string bin = build_dir(), dir = temp_dir("inspect");
    std::string out;
    int rc = run(bin + "/inspect " + tiny_flags + " --batch 2 --seed 3 --threads 2 --out " + dir + "/dump.safetensors --dot " + dir +
                     "/graph.dot --per-t --per-t-buckets 3 --per-t-out " + dir + "/per_t --gradcheck 1 --gradcheck-match conv_out",
                 &out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK(out.find("gradcheck: ") != std::string::npos);
    CHECK(out.find("gradcheck: 2 of 2 parameter tensors pass\n") != std::string::npos);
    CHECK(out.find("temb.fc1.weight") != std::string::npos);  // in the table

    Safetensors st = Safetensors::load(dir + "/dump.safetensors");
    nn::UNet model(tiny_unet(4), 3);  // the program's fresh init: the same config and seed
    int64_t acts = 0;
    for (const auto& e : st.entries()) acts += e.name.rfind("act.", 0) == 0;
    for (const auto& p : model.named_parameters()) {
        INFO(p.name);
        CHECK(max_abs_diff(st.tensor("param." + p.name), p.var.value()) == 0);
        CHECK(st.tensor("grad." + p.name).shape() == p.var.shape());
        CHECK(tensor_stats(st.tensor("grad." + p.name)).l2 > 0);  // a real gradient, not the zeros a missing one would get
    }
    CHECK(st.i64("input.t").size() == 2);
    std::string dot = read_file(dir + "/graph.dot");
    CHECK(int64_t(count(dot, "shape=box")) == acts);
    CHECK(count(dot, "shape=ellipse") == model.named_parameters().size() + 3);  // + input.xt, temb.sinusoidal, input.eps
    CHECK(count(read_file(dir + "/per_t.csv"), "\n") == 4);
    CHECK(count(read_file(dir + "/per_t.svg"), "<polyline") == 2);  // loss and gradient norm against t

    CHECK(run(bin + "/inspect --checkpoint " + dir + "/missing.safetensors", &out) != 0);
    CHECK(out.find(dir + "/missing.safetensors") != std::string::npos);
    CHECK(run(bin + "/inspect " + tiny_flags + " --t 100", &out) != 0);
    CHECK(out.find("make_batch: t = 100 is out of range [0, 100)") != std::string::npos);
    CHECK(run(bin + "/inspect --ch 8 --checkpoint " + dir + "/missing.safetensors", &out) != 0);
    CHECK(out.find("inspect: --ch is for a fresh init; with --checkpoint the model and schedule come from its metadata") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("inspect --precision: says which precision conv2d used, the fp64 gradcheck passes in each, a bad value fails") {
    const std::string cmd = build_dir() + "/inspect " + tiny_flags + " --batch 2 --seed 3 --threads 2 --no-table --gradcheck 1 --gradcheck-match conv_out";
    auto loss_of = [](const std::string& out) {  // "loss 1.14438 (uniform over t) | ..."
        const size_t at = out.find("\nloss ");
        REQUIRE(at != std::string::npos);
        return std::stod(out.substr(at + 6));
    };
    std::string out;
    REQUIRE(run(cmd + " --precision fp32", &out) == 0);
    CHECK(out.find("| conv2d fp32\n") != std::string::npos);
    const double loss32 = loss_of(out);
    REQUIRE(run(cmd + " --precision bf16", &out) == 0);
    INFO(out);
    CHECK(out.find("gradcheck: 2 of 2 parameter tensors pass\n") != std::string::npos);  // float64, whatever conv2d's precision
    if (bf16_available()) {
        CHECK(out.find("| conv2d bf16 (") != std::string::npos);
        // the same batch and weights: a loss moved by bf16 rounding (8 significant bits), not another loss
        CHECK(loss_of(out) != loss32);
        CHECK(std::abs(loss_of(out) - loss32) < 1e-2 * loss32);
    } else {
        CHECK(out.find("inspect: --precision bf16 needs AMX-BF16") != std::string::npos);
        CHECK(out.find("| conv2d fp32\n") != std::string::npos);
        CHECK(loss_of(out) == loss32);
    }
    // Winograd is float32 on every CPU: the same loss up to its rounding (below the 6 digits printed
    // here; test_kernels.cpp checks that it rounds differently), and the fp64 gradcheck passes
    REQUIRE(run(cmd + " --precision winograd", &out) == 0);
    if (kFastKernels) CHECK(out.find("| conv2d winograd (") != std::string::npos);
    else MESSAGE("skipped the Winograd label: make REF=1 runs the reference loops for every --precision");
    CHECK(out.find("gradcheck: 2 of 2 parameter tensors pass\n") != std::string::npos);
    CHECK(std::abs(loss_of(out) - loss32) < 1e-4 * loss32);
    CHECK(run(cmd + " --precision fp16", &out) != 0);
    CHECK(out.find("inspect: --precision expects fp32, winograd or bf16, got 'fp16'") != std::string::npos);
}

TEST_CASE("inspect: train --grad-norms-every writes per-parameter gradient norms next to the checkpoint") {
    std::string bin = build_dir(), dir = temp_dir("train_gradnorms");
    ddpm::write_synthetic_idx(dir + "/data", 8, 3);
    std::string out;
    int rc = run(bin + "/train --data " + dir + "/data --out " + dir + "/run --ch 8 --batch 2 --steps 4 --every 4 --samples 1 --ddim-steps 1 --threads 2 --grad-norms-every 2",
                 &out);
    INFO(out);
    REQUIRE(rc == 0);
    std::string csv = read_file(dir + "/run/grad_norms.csv");
    CHECK(csv.rfind("step,temb.fc1.weight,", 0) == 0);
    CHECK(count(csv, "\n") == 3);  // the header, steps 2 and 4
    CHECK(count(read_file(dir + "/run/grad_norms.svg"), "<polyline") >= 1);

    // build/inspect on that checkpoint: the dump's parameters are the checkpoint's
    REQUIRE(run(bin + "/inspect --checkpoint " + dir + "/run/checkpoint.safetensors --data " + dir + "/data --batch 1 --no-table --threads 2 --out " +
                    dir + "/dump.safetensors",
                &out) == 0);
    nn::Checkpoint ck = nn::load_checkpoint(dir + "/run/checkpoint.safetensors");
    Safetensors dump = Safetensors::load(dir + "/dump.safetensors");
    for (const nn::NamedTensor& e : ck.model) {
        INFO(e.name);
        CHECK(max_abs_diff(dump.tensor("param." + e.name), e.value) == 0);
        CHECK(dump.tensor("grad." + e.name).shape() == e.value.shape());
        CHECK(tensor_stats(dump.tensor("grad." + e.name)).l2 > 0);
    }
    std::system(("rm -rf " + dir).c_str());
}
