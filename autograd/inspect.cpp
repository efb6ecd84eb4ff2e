// Graph walking, statistics and DOT export for recorded graphs (see inspect.h).
#include "autograd/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

namespace dl {

// ---- statistics ---------------------------------------------------------------------------
TensorStats tensor_stats(const Tensor& t) {
    TensorStats s;
    const int64_t n = t.numel();
    if (n == 0) return s;
    double sum = 0, sumsq = 0, max_abs = 0;
    int64_t bad = 0;
    dispatch(t.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* x = t.data<T>();
#pragma omp parallel for reduction(+ : sum, sumsq, bad) reduction(max : max_abs) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            double v = double(x[i]);
            if (!std::isfinite(v)) { bad++; continue; }
            sum += v;
            sumsq += v * v;
            max_abs = std::max(max_abs, std::abs(v));
        }
        double mean = sum / double(n), var = 0;  // second pass: exact even when |mean| >> std
#pragma omp parallel for reduction(+ : var) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            double d = double(x[i]) - mean;
            if (std::isfinite(d)) var += d * d;
        }
        s.mean = mean;
        s.std = std::sqrt(var / double(n));
    });
    s.max_abs = max_abs;
    s.l2 = std::sqrt(sumsq);
    s.finite = bad == 0;
    if (!s.finite) s.mean = s.std = s.max_abs = s.l2 = NAN;
    return s;
}

// ---- retained gradients -------------------------------------------------------------------
namespace {
struct RetainAll : Observer {
    void before_backward(const Variable& v, const Tensor& grad) override { v.impl()->grad = grad; }
};
thread_local RetainAll g_retain_all;
thread_local bool g_retaining = false;
}  // namespace

void set_retain_all_grads(bool on) {
    if (on) add_observer(&g_retain_all);
    else remove_observer(&g_retain_all);
    g_retaining = on;
}
bool retain_all_grads() { return g_retaining; }

// ---- the graph ----------------------------------------------------------------------------
bool is_op_node(const Variable& v) { return std::strcmp(v.op(), "leaf") != 0; }

const char* node_kind(const Variable& v) {
    if (is_op_node(v)) return "act";
    return v.requires_grad() ? "param" : "input";
}

std::vector<Variable> graph_order(const Variable& root) {
    std::vector<Variable> all = topological_order(root), ops;
    for (const Variable& v : all)
        if (is_op_node(v)) ops.push_back(v);
    // Creation order is the order the forward pass ran (an op is made after its inputs).
    std::sort(ops.begin(), ops.end(), [](const Variable& a, const Variable& b) { return a.id() < b.id(); });
    std::vector<Variable> out;
    std::unordered_set<VarImpl*> placed;
    auto place = [&](const Variable& v) {
        if (placed.insert(v.impl()).second) out.push_back(v);
    };
    for (const Variable& op : ops) {
        for (const Variable& in : op.inputs())
            if (in.defined() && !is_op_node(in)) place(in);
        place(op);
    }
    if (out.empty()) place(root);  // a graph of one leaf
    return out;
}

Variable find_node(const Variable& root, const std::string& name) {
    std::vector<Variable> nodes = graph_order(root);
    for (const Variable& v : nodes)
        if (v.name() == name) return v;
    std::string near;
    int shown = 0;
    for (int pass = 0; pass < 2 && shown == 0; pass++)  // names containing `name`, else the first few
        for (const Variable& v : nodes)
            if (shown < 8 && (pass == 1 || v.name().find(name) != std::string::npos)) {
                near += cat(shown ? ", " : "", v.name());
                shown++;
            }
    fail("find_node: no node named '", name, "' among the ", nodes.size(), " nodes of the graph (",
         shown ? cat("e.g. ", near) : std::string("none named"), ")");
}

// ---- the table ----------------------------------------------------------------------------
std::vector<NodeStats> node_stats(const std::vector<Variable>& nodes) {
    std::vector<NodeStats> rows;
    rows.reserve(nodes.size());
    for (const Variable& v : nodes) {
        NodeStats r;
        r.name = v.name().empty() ? cat("#", v.id()) : v.name();
        r.kind = node_kind(v);
        r.op = v.op();
        r.shape = v.shape();
        r.value = tensor_stats(v.value());
        r.has_grad = v.grad().defined();
        if (r.has_grad) r.grad = tensor_stats(v.grad());
        r.ratio = r.has_grad && r.value.l2 > 0 ? r.grad.l2 / r.value.l2 : 0;
        rows.push_back(std::move(r));
    }
    return rows;
}

static std::string num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%10.3e", x);
    return buf;
}

std::string stats_table(const std::vector<NodeStats>& rows) {
    size_t wname = 4, wshape = 5;
    for (const NodeStats& r : rows) {
        wname = std::max(wname, r.name.size());
        wshape = std::max(wshape, shape_str(r.shape).size());
    }
    auto pad = [](std::string s, size_t w) { return s.size() < w ? s + std::string(w - s.size(), ' ') : s; };
    auto rpad = [](std::string s, size_t w) { return s.size() < w ? std::string(w - s.size(), ' ') + s : s; };
    std::string out = cat(rpad("#", 4), "  ", pad("kind", 5), "  ", pad("name", wname), "  ", pad("shape", wshape));
    for (const char* h : {"mean", "std", "max|x|", "|grad|", "max|g|", "|g|/|x|"}) out += " " + rpad(h, 10);
    out += "\n";
    for (size_t i = 0; i < rows.size(); i++) {
        const NodeStats& r = rows[i];
        out += cat(rpad(std::to_string(i + 1), 4), "  ", pad(r.kind, 5), "  ", pad(r.name, wname), "  ", pad(shape_str(r.shape), wshape));
        out += " " + num(r.value.mean) + " " + num(r.value.std) + " " + num(r.value.max_abs);
        std::string dash = rpad("-", 10);
        out += " " + (r.has_grad ? num(r.grad.l2) : dash) + " " + (r.has_grad ? num(r.grad.max_abs) : dash);
        out += " " + (r.has_grad && r.value.l2 > 0 ? num(r.ratio) : dash) + "\n";
    }
    return out;
}

// ---- DOT ----------------------------------------------------------------------------------
static std::string dot_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

std::string graph_dot(const std::vector<Variable>& nodes, const std::string& title) {
    std::unordered_map<VarImpl*, size_t> index;  // node -> its number in `nodes`
    for (size_t i = 0; i < nodes.size(); i++) index[nodes[i].impl()] = i;
    std::string out = cat("digraph \"", dot_escape(title), "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
    for (size_t i = 0; i < nodes.size(); i++) {
        const Variable& v = nodes[i];
        std::string name = dot_escape(v.name().empty() ? cat("#", v.id()) : v.name()), shape = shape_str(v.shape());
        if (is_op_node(v))
            out += cat("  n", i, " [shape=box, label=\"", name, "\\n", v.op(), " ", shape, "\"];\n");
        else
            out += cat("  n", i, " [shape=ellipse, style=filled, fillcolor=\"", v.requires_grad() ? "#cfe2f3" : "#e6e6e6", "\", label=\"",
                       name, "\\n", shape, "\"];\n");
    }
    for (size_t i = 0; i < nodes.size(); i++)
        for (const Variable& in : nodes[i].inputs()) {
            auto it = in.defined() ? index.find(in.impl()) : index.end();
            if (it != index.end()) out += cat("  n", it->second, " -> n", i, ";\n");
        }
    return out + "}\n";
}

}  // namespace dl
