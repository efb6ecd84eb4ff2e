#include "autograd/variable.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <unordered_set>

#include "autograd/profile.h"
#include "tensor/ops.h"

namespace dl {

namespace {
thread_local bool g_grad_enabled = true;
thread_local std::vector<std::string> g_scope;
bool g_retain_all = false;
bool g_anomaly = false;
std::atomic<uint64_t> g_next_id{1};
thread_local NodeRecorder* g_recorder = nullptr;
}  // namespace

NodeRecorder::NodeRecorder() : prev_(g_recorder) { g_recorder = this; }
NodeRecorder::~NodeRecorder() { g_recorder = prev_; }

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

NameScope::NameScope(const std::string& part) { g_scope.push_back(part); }
NameScope::~NameScope() { g_scope.pop_back(); }
std::string current_scope() {
    std::string s;
    for (const auto& p : g_scope) {
        if (p.empty()) continue;
        s += (s.empty() ? "" : ".") + p;
    }
    return s;
}

void set_retain_all_grads(bool on) { g_retain_all = on; }
bool retain_all_grads() { return g_retain_all; }
void set_detect_anomaly(bool on) { g_anomaly = on; }
bool detect_anomaly() { return g_anomaly; }

static std::string describe(const Variable& v) {
    return cat("op '", v.op(), "'", v.name().empty() ? "" : cat(" (", v.name(), ")"), " ", dtype_name(v.dtype()), " ", shape_str(v.shape()));
}

static std::string bad_value(const Tensor& t, int64_t i) {
    double v = t.flat(i);
    return cat("element ", i, " is ", std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
}

// Anomaly mode's check; `more` is appended to the message (which input was already bad).
static void check_finite(const Tensor& t, const std::string& what, const std::string& more = "") {
    int64_t bad = 0;
    if (all_finite(t, &bad)) return;
    fail("detect_anomaly: ", what, " is non-finite: ", bad_value(t, bad), more);
}

// For a forward check that failed: the first input that was non-finite already (a parameter or
// an input that came in bad), or "" when all were finite and this op made the first NaN/Inf.
static std::string nonfinite_input(const std::vector<Variable>& inputs) {
    for (size_t k = 0; k < inputs.size(); k++) {
        int64_t bad = 0;
        if (inputs[k].defined() && !all_finite(inputs[k].value(), &bad))
            return cat("; its input ", k, ", ", describe(inputs[k]), ", was non-finite already: ", bad_value(inputs[k].value(), bad));
    }
    return "";
}

// ---- Variable -----------------------------------------------------------------------------
Variable::Variable(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
    if (!value.defined()) fail("Variable: cannot wrap an undefined tensor", name.empty() ? "" : cat(" (", name, ")"));
    impl_->value = std::move(value);
    impl_->requires_grad = requires_grad;
    impl_->name = std::move(name);
    impl_->id = g_next_id++;
    if (g_recorder && g_grad_enabled) g_recorder->add(*this);
}

void Variable::set_requires_grad(bool r) {
    if (!is_leaf()) fail("set_requires_grad: ", describe(*this), " is not a leaf");
    impl_->requires_grad = r;
}

Variable& Variable::set_name(std::string name) {
    impl_->name = std::move(name);
    return *this;
}

void Variable::zero_grad() {
    if (impl_->grad_attached && impl_->grad.defined()) impl_->grad.zero_();
    else impl_->grad = Tensor();
}

void Variable::set_grad(Tensor g) {
    if (g.defined() && (g.shape() != shape() || g.dtype() != dtype()))
        fail("set_grad: gradient ", dtype_name(g.dtype()), " ", shape_str(g.shape()), " for ", describe(*this));
    impl_->grad_attached = g.defined();
    impl_->grad = std::move(g);
}

// A gradient taken by accumulate_grad that another Variable (or anyone) still holds: not to be
// written in place. An attached buffer (set_grad: a view into a model's flat gradient) shares its
// storage by design and is always written in place.
static bool shared_grad(const VarImpl& v) { return !v.grad_attached && v.grad.storage_use_count() > 1; }

Tensor& Variable::grad_buffer() const {
    bool accumulate;
    Tensor& g = grad_buffer(&accumulate);
    return accumulate ? g : g.zero_();
}

Tensor& Variable::grad_buffer(bool* accumulate) const {
    *accumulate = impl_->grad.defined();
    if (!*accumulate) impl_->grad = Tensor(shape(), dtype());
    else if (shared_grad(*impl_)) impl_->grad = impl_->grad.clone();
    return impl_->grad;
}

void Variable::accumulate_grad(const Tensor& g) const {
    if (g.shape() != shape() || g.dtype() != dtype())
        fail("backward: gradient for ", describe(*this), " has ", dtype_name(g.dtype()), " ", shape_str(g.shape()));
    if (!impl_->grad.defined()) impl_->grad = g;
    else if (shared_grad(*impl_)) impl_->grad = add(impl_->grad, g);
    else add_(impl_->grad, g);
}

Variable make_result(const char* op, Tensor value, std::vector<Variable> inputs, std::function<void(const Tensor&)> backward) {
    Variable out(std::move(value));
    VarImpl* impl = out.impl();
    impl->op = op;
    std::string scope = current_scope();
    impl->name = scope.empty() ? op : scope + "." + op;
    if (OpProfile* prof = active_op_profile()) prof->forward_done(op, out.value(), inputs);
    if (g_anomaly && !all_finite(out.value())) check_finite(out.value(), cat("forward of ", describe(out), ": the output"), nonfinite_input(inputs));
    bool needs = false;
    if (g_grad_enabled)
        for (const Variable& in : inputs) needs = needs || (in.defined() && in.requires_grad());
    if (needs) {
        impl->requires_grad = true;
        impl->inputs = std::move(inputs);
        impl->backward = std::move(backward);
    }
    return out;
}

// ---- the backward engine ------------------------------------------------------------------
std::vector<Variable> topological_order(const Variable& root) {
    // Iterative depth-first search; a node is emitted after all of its inputs.
    std::vector<Variable> order;
    std::unordered_set<VarImpl*> seen;
    std::vector<std::pair<Variable, size_t>> stack{{root, 0}};
    seen.insert(root.impl());
    while (!stack.empty()) {
        auto& [v, next] = stack.back();
        if (next < v.inputs().size()) {
            const Variable& in = v.inputs()[next++];
            if (in.defined() && seen.insert(in.impl()).second) stack.push_back({in, 0});
        } else {
            order.push_back(v);
            stack.pop_back();
        }
    }
    return order;
}

void Variable::backward(bool keep_graph) { backward(Tensor(), keep_graph); }

void Variable::backward(const Tensor& seed, bool keep_graph) {
    if (!defined()) fail("backward: undefined Variable");
    if (impl_->graph_freed)
        fail("backward: the graph of ", describe(*this), " was freed by an earlier backward; pass keep_graph = true to the first one");
    if (!requires_grad()) fail("backward: ", describe(*this), " does not require grad (no input requires grad, or made under NoGradGuard)");
    if (!seed.defined() && numel() != 1)
        fail("backward: ", describe(*this), " is not a scalar; a non-scalar output needs a seed gradient of its shape");
    if (seed.defined() && (seed.shape() != shape() || seed.dtype() != dtype()))
        fail("backward: seed gradient is ", dtype_name(seed.dtype()), " ", shape_str(seed.shape()), ", expected ", dtype_name(dtype()), " ", shape_str(shape()));

    std::vector<Variable> order = topological_order(*this);
    for (const Variable& v : order)
        if (v.impl()->graph_freed)
            fail("backward: the graph through ", describe(v), " was freed by an earlier backward; pass keep_graph = true to the first one");

    accumulate_grad(seed.defined() ? seed : Tensor::ones(shape(), dtype()));
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        VarImpl* v = it->impl();
        if (!v->grad.defined()) continue;  // no path from the output reaches it
        for (const Hook& h : v->hooks) h(*it, v->grad);
        if (v->backward) {
            OpProfile* prof = active_op_profile();
            const double t0 = prof ? OpProfile::clock() : 0;
            v->backward(v->grad);
            if (prof) prof->backward_done(*v, OpProfile::clock() - t0);
            if (g_anomaly)
                for (size_t k = 0; k < v->inputs.size(); k++)
                    if (v->inputs[k].requires_grad() && v->inputs[k].grad().defined())
                        check_finite(v->inputs[k].grad(), cat("backward of ", describe(*it), ": the gradient of input ", k, ", ", describe(v->inputs[k])));
            if (!v->retain_grad && !g_retain_all) {
                v->grad = Tensor();
                v->grad_attached = false;
            }
            if (!keep_graph) {
                v->backward = nullptr;
                v->inputs.clear();
                v->graph_freed = true;
            }
        }
    }
}

}  // namespace dl
