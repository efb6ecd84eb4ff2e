// One inspected step of DDPM training: the loss with every gradient kept, its dump, its
// float64 gradient check and its dependence on t (see inspect.h). B batch, C channels, R side.
#include "ddpm/inspect.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "autograd/inspect.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "ddpm/report/svg.h"

namespace dl::ddpm {

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

InspectBatch make_batch(const Tensor& x0, int64_t T, int64_t t_fixed, Philox& gen) {
    if (x0.ndim() != 4) fail("make_batch: expected images (B, C, H, W), got ", shape_str(x0.shape()));
    if (t_fixed >= T || t_fixed < -1) fail("make_batch: t = ", t_fixed, " is out of range [0, ", T, ") (or -1: random per sample)");
    int64_t B = x0.dim(0);
    InspectBatch b;
    b.x0 = x0;
    b.t = t_fixed >= 0 ? std::vector<int64_t>(size_t(B), t_fixed) : randint(B, T, gen);  // t ~ U{0..T-1}
    b.eps = randn(x0.shape(), gen, x0.dtype());                                             // eps ~ N(0, I)
    return b;
}

Inspection inspect_training_loss(const Schedule& s, nn::Module& model, const EpsModel& net, const InspectBatch& batch,
                                 uint64_t dropout_seed, const std::vector<double>& weights) {
    Inspection in;
    in.batch = batch;
    model.zero_grad();
    RetainAllGrads keep;
    Philox gen(dropout_seed);
    auto t0 = std::chrono::steady_clock::now();
    in.loss = training_loss(s, net, batch.x0, batch.t, batch.eps, &gen, weights);
    in.forward_seconds = seconds_since(t0);
    in.xt = find_node(in.loss, "input.xt").value();  // the q_sample that training_loss made
    in.nodes = graph_order(in.loss);
    nn::make_names_unique(in.nodes);  // the model's own nodes are unique already; this covers the loss's
    t0 = std::chrono::steady_clock::now();
    in.loss.backward(/*keep_graph=*/true);
    in.backward_seconds = seconds_since(t0);
    return in;
}

Safetensors inspection_dump(const Inspection& in, const nn::Module& model, const Schedule& s, uint64_t dropout_seed) {
    Safetensors st;
    st.metadata["format"] = "ddpm.cpp inspect dump 1";
    st.metadata["model"] = model.config_string();
    st.metadata["schedule"] = schedule_name(s.kind);
    st.metadata["T"] = std::to_string(s.T);
    st.metadata["dropout_seed"] = std::to_string(dropout_seed);
    st.add("input.x0", in.batch.x0);
    st.add_i64("input.t", in.batch.t);
    st.add("input.eps", in.batch.eps);
    st.add("input.xt", in.xt);
    st.add("loss", in.loss.value());
    for (const nn::NamedParameter& p : model.named_parameters()) {
        st.add("param." + p.name, p.var.value());
        st.add("grad." + p.name, p.var.grad().defined() ? p.var.grad() : Tensor::zeros(p.var.shape(), p.var.dtype()));
    }
    for (const Variable& v : in.nodes) {
        if (!is_op_node(v)) continue;
        st.add("act." + v.name(), v.value());
        if (v.grad().defined()) st.add("grad.act." + v.name(), v.grad());
    }
    return st;
}

// Converts a module to float64 and back to its dtype when it goes out of scope (also on errors).
struct TemporaryDType {
    nn::Module& model;
    DType saved;
    TemporaryDType(nn::Module& m, DType d) : model(m), saved(m.dtype()) { model.to(d); }
    ~TemporaryDType() { model.to(saved); }
};

GradcheckReport gradcheck_training_loss(const Schedule& s, nn::Module& model, const EpsModel& net, const InspectBatch& batch,
                                        uint64_t dropout_seed, const GradcheckOptions& opt, const std::string& match,
                                        const std::vector<double>& weights) {
    TemporaryDType f64(model, DType::F64);
    Tensor x0 = batch.x0.to(DType::F64), eps = batch.eps.to(DType::F64);  // (B, C, H, W)
    std::vector<Variable> params;
    for (const nn::NamedParameter& p : model.named_parameters())
        if (p.name.find(match) != std::string::npos) params.push_back(p.var);
    if (params.empty()) fail("gradcheck_training_loss: no parameter key contains '", match, "'");
    auto loss = [&]() {
        Philox gen(dropout_seed);  // the same masks in every evaluation
        return training_loss(s, net, x0, batch.t, eps, &gen, weights);
    };
    return gradcheck_leaves(loss, params, opt);
}

// ---- loss and gradient norm against t ------------------------------------------------------
std::vector<PerTRow> per_t_sweep(const Schedule& s, nn::Module& model, const EpsModel& net, const Tensor& x0, const Tensor& eps,
                                 int64_t buckets, uint64_t dropout_seed, const std::vector<double>& weights) {
    if (buckets < 1 || buckets > s.T) fail("per_t_sweep: buckets must be in [1, T = ", s.T, "], got ", buckets);
    const int64_t B = x0.dim(0);
    std::vector<PerTRow> rows;
    for (int64_t k = 0; k < buckets; k++) {
        PerTRow r{k * s.T / buckets, (k + 1) * s.T / buckets, 0, 0, 0};
        std::vector<int64_t> t(static_cast<size_t>(B));  // (B) spread evenly over [t_lo, t_hi)
        for (int64_t i = 0; i < B; i++) {
            t[size_t(i)] = r.t_lo + i * (r.t_hi - r.t_lo) / B;
            r.t_mean += double(t[size_t(i)]) / double(B);
        }
        model.zero_grad();
        Philox gen(dropout_seed);
        Variable loss = training_loss(s, net, x0, t, eps, &gen, weights);
        loss.backward();
        r.loss = loss.value().item();
        r.grad_norm = tensor_stats(model.flat_grads()).l2;  // over every parameter
        rows.push_back(r);
    }
    return rows;
}

static const char* kPerTHeader = "t_lo,t_hi,t_mean,loss,grad_norm";

void write_per_t_csv(const std::string& path, const std::vector<PerTRow>& rows) {
    std::string out = std::string(kPerTHeader) + "\n";
    char buf[160];
    for (const PerTRow& r : rows) {
        std::snprintf(buf, sizeof buf, "%lld,%lld,%.2f,%.6g,%.6g\n", (long long)r.t_lo, (long long)r.t_hi, r.t_mean, r.loss, r.grad_norm);
        out += buf;
    }
    write_file_atomic(path, out);
}

std::vector<PerTRow> read_per_t_csv(const std::string& path) {
    std::vector<PerTRow> rows;
    for (const auto& v : read_csv_numbers(path, kPerTHeader, 5, cat("the header '", kPerTHeader, "'"))) {
        if (!(v[1] > v[0] && v[1] <= double(int64_t(1) << 53))) fail(path, ": a bucket [t_lo, t_hi) must not be empty, got [", v[0], ", ", v[1], ")");
        rows.push_back({int64_t(v[0]), int64_t(v[1]), v[2], v[3], v[4]});
    }
    return rows;
}

void write_per_t_svg(const std::string& path, const std::vector<PerTRow>& rows, const std::string& title) {
    write_file_atomic(path, per_t_svg(rows, title));
}

std::string per_t_svg(const std::vector<PerTRow>& rows, const std::string& title) {
    Series loss{"loss (MSE of the noise)", {}, {}}, norm{"global gradient norm", {}, {}};
    for (const PerTRow& r : rows) {
        loss.x.push_back(r.t_mean);
        loss.y.push_back(r.loss);
        norm.x.push_back(r.t_mean);
        norm.y.push_back(r.grad_norm);
    }
    return svg_plot(title, "timestep t", "loss, gradient norm", {loss, norm}, true);
}

}  // namespace dl::ddpm
