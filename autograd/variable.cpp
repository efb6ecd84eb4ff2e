#include "autograd/variable.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <unordered_set>

#include "tensor/ops.h"

namespace dl {

namespace {
thread_local bool g_grad_enabled = true;
thread_local std::vector<std::string> g_scope;
thread_local std::vector<Observer*> g_observers;
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

void add_observer(Observer* o) {
    if (std::find(g_observers.begin(), g_observers.end(), o) == g_observers.end()) g_observers.push_back(o);
}
void remove_observer(Observer* o) { g_observers.erase(std::remove(g_observers.begin(), g_observers.end(), o), g_observers.end()); }

std::string describe(const Variable& v) {
    return cat("op '", v.op(), "'", v.name().empty() ? "" : cat(" (", v.name(), ")"), " ", dtype_name(v.dtype()), " ", shape_str(v.shape()));
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

void Variable::attach_grad(Tensor g) {
    if (!is_leaf()) fail("attach_grad: ", describe(*this), " is not a leaf");
    if (g.defined() && (g.shape() != shape() || g.dtype() != dtype()))
        fail("attach_grad: gradient ", dtype_name(g.dtype()), " ", shape_str(g.shape()), " for ", describe(*this));
    impl_->grad_attached = g.defined();
    impl_->grad = std::move(g);
}

Variable::GradSlot Variable::grad_slot() const {
    Tensor& g = impl_->grad;
    if (!g.defined()) return {g, false};
    if (g.shape() != shape() || g.dtype() != dtype())
        fail("backward: the gradient of ", describe(*this), " is ", dtype_name(g.dtype()), " ", shape_str(g.shape()));
    // An attached buffer shares its storage by design and is always written in place.
    if (!impl_->grad_attached && g.storage_use_count() > 1) g = g.clone();
    return {g, true};
}

// The observer that runs the hooks of each Variable backward reaches.
namespace {
struct Hooks : Observer {
    void before_backward(const Variable& v, const Tensor& grad) override {
        for (const Hook& h : v.impl()->hooks) h(v, grad);
    }
};
thread_local Hooks g_hooks;
}  // namespace

void Variable::register_hook(Hook hook) {
    impl_->hooks.push_back(std::move(hook));
    add_observer(&g_hooks);
}

void Variable::retain_grad() {
    register_hook([](const Variable& v, const Tensor& grad) { v.impl()->grad = grad; });
}

Variable make_result(const char* op, Tensor value, std::vector<Variable> inputs, std::function<void(const Tensor&)> backward) {
    Variable out(std::move(value));
    VarImpl* impl = out.impl();
    impl->op = op;
    std::string scope = current_scope();
    impl->name = scope.empty() ? op : scope + "." + op;
    for (Observer* o : g_observers) o->forward_done(out, inputs);
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

// The graph that backward from root walks, in topological order, after checking that it can.
static std::vector<Variable> graph_to_walk(const Variable& root, const Tensor& seed) {
    if (!root.defined()) fail("backward: undefined Variable");
    if (root.impl()->graph_freed)
        fail("backward: the graph of ", describe(root), " was freed by an earlier backward; pass keep_graph = true to the first one");
    if (!root.requires_grad())
        fail("backward: ", describe(root), " does not require grad (no input requires grad, or made under NoGradGuard)");
    if (!seed.defined() && root.numel() != 1)
        fail("backward: ", describe(root), " is not a scalar; a non-scalar output needs a seed gradient of its shape");
    if (seed.defined() && (seed.shape() != root.shape() || seed.dtype() != root.dtype()))
        fail("backward: seed gradient is ", dtype_name(seed.dtype()), " ", shape_str(seed.shape()), ", expected ",
             dtype_name(root.dtype()), " ", shape_str(root.shape()));
    std::vector<Variable> order = topological_order(root);
    for (const Variable& v : order)
        if (v.impl()->graph_freed)
            fail("backward: the graph through ", describe(v), " was freed by an earlier backward; pass keep_graph = true to the first one");
    return order;
}

void Variable::backward(bool keep_graph) { backward(Tensor(), keep_graph); }

void Variable::backward(const Tensor& seed, bool keep_graph) {
    std::vector<Variable> order = graph_to_walk(*this, seed);  // every input before its users
    const Tensor d_out = seed.defined() ? seed : Tensor::ones(shape(), dtype());  // d out / d out = 1
    auto [g, accumulate] = grad_slot();
    if (accumulate) add_(g, d_out);
    else g = d_out;

    for (auto it = order.rbegin(); it != order.rend(); ++it) {  // from the output back to the leaves
        VarImpl& node = *it->impl();
        if (!node.grad.defined()) continue;         // no path from the output reaches it
        const bool op = node.backward != nullptr;  // a leaf has no closure and keeps its gradient
        const Tensor grad = op ? std::exchange(node.grad, Tensor()) : node.grad;  // an op's leaves the node
        for (Observer* o : g_observers) o->before_backward(*it, grad);
        if (op) node.backward(grad);  // hands each input its part
        for (Observer* o : g_observers) o->after_backward(*it);
        if (op && !keep_graph) {  // release the graph: the closure and the edges
            node.backward = nullptr;
            node.inputs.clear();
            node.graph_freed = true;
        }
    }
}

}  // namespace dl
