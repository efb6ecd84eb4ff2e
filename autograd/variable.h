// Reverse-mode automatic differentiation, micrograd's algorithm over tensors.
//
// A Variable wraps a Tensor (its value) and, when it was made by an op while gradients are
// recorded, the op's name, its inputs, and a closure that turns the gradient of this Variable
// into gradients of the inputs. backward() sorts the graph that ends here topologically and runs
// the closures from the output back to the leaves; each closure ACCUMULATES (+=) into the
// gradients of its inputs, so a Variable used twice receives the sum of both paths.
//
// Copying a Variable is shallow: copies share value, gradient and graph node.
//
// Inspection is part of the design: every Variable has a name (module path and op, e.g.
// "down.0.res.1.conv2"), hooks see each gradient as backward reaches it, retain_grad() (or the
// global retain_all_grads switch) keeps intermediate gradients after backward, and
// topological_order() lists the graph for printing, dumping and DOT export.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

class Variable;
using Hook = std::function<void(const Variable& var, const Tensor& grad)>;

struct VarImpl {
    Tensor value;
    Tensor grad;                      // undefined until a gradient reaches this Variable
    bool requires_grad = false;
    bool retain_grad = false;         // keep grad after backward although not a leaf
    bool graph_freed = false;         // backward already ran through here and released the graph
    bool grad_attached = false;       // grad is an outside buffer (set_grad): zero_grad zeroes it in place
    std::string name;                 // module path and op; "" for unnamed leaves
    const char* op = "leaf";          // the op that made it ("leaf" for inputs and parameters)
    uint64_t id = 0;                  // creation order: a topological order of the forward pass
    std::vector<Variable> inputs;     // the op's inputs (graph edges); cleared when freed
    std::function<void(const Tensor& dout)> backward;  // dout: this Variable's gradient
    std::vector<Hook> hooks;
};

class Variable {
public:
    Variable() = default;  // undefined
    explicit Variable(Tensor value, bool requires_grad = false, std::string name = "");

    bool defined() const { return impl_ != nullptr; }
    const Tensor& value() const { return impl_->value; }
    Tensor& value() { return impl_->value; }
    const Tensor& grad() const { return impl_->grad; }  // undefined Tensor when none
    const Shape& shape() const { return impl_->value.shape(); }
    DType dtype() const { return impl_->value.dtype(); }
    int64_t numel() const { return impl_->value.numel(); }
    bool requires_grad() const { return impl_->requires_grad; }
    void set_requires_grad(bool r);
    bool is_leaf() const { return impl_->backward == nullptr && !impl_->graph_freed; }
    const std::string& name() const { return impl_->name; }
    Variable& set_name(std::string name);
    const char* op() const { return impl_->op; }
    uint64_t id() const { return impl_->id; }
    const std::vector<Variable>& inputs() const { return impl_->inputs; }
    VarImpl* impl() const { return impl_.get(); }

    // Runs backward from this Variable. A scalar output is seeded with 1; any other output
    // needs a seed of its own shape. Without keep_graph the graph is released as it goes, and a
    // second backward through it throws.
    void backward(bool keep_graph = false);
    void backward(const Tensor& seed, bool keep_graph = false);

    // The next backward starts from zero: a gradient of its own is dropped, an attached buffer
    // (set_grad) is zeroed in place and stays attached.
    void zero_grad();
    // Makes g (same shape and dtype; may be a view, e.g. of a model's flat gradient buffer) the
    // buffer that backward accumulates into; an undefined g detaches it.
    void set_grad(Tensor g);
    void retain_grad() { impl_->retain_grad = true; }
    void register_hook(Hook hook) { impl_->hooks.push_back(std::move(hook)); }

    // The gradient buffer, zero-filled on first use; backward closures accumulate into it.
    Tensor& grad_buffer() const;
    // The same buffer for a kernel that can either add into it or overwrite it: on first use it is
    // handed out uninitialized with *accumulate = false, and the caller must write every element
    // (which saves the zero fill and a read of the zeros); afterwards *accumulate = true.
    Tensor& grad_buffer(bool* accumulate) const;
    // grad += g. A first gradient is taken as it is, its storage shared with whoever else holds it
    // (an add hands the same dz to both inputs, a reshape a view of it), so that passing a gradient
    // on costs no copy. Copy on write: while a gradient's storage is shared (and it is not a buffer
    // attached with set_grad), nothing writes into it in place; a second accumulate_grad makes
    // grad + g out of place, and grad_buffer() copies it first.
    void accumulate_grad(const Tensor& g) const;

private:
    std::shared_ptr<VarImpl> impl_;
};

// Records an op's result: the value, the inputs and the backward closure. While gradients are
// off (NoGradGuard), or when no input requires a gradient, nothing is recorded and the closure
// is dropped. The name is the current NameScope path followed by the op.
Variable make_result(const char* op, Tensor value, std::vector<Variable> inputs, std::function<void(const Tensor&)> backward);

// ---- modes --------------------------------------------------------------------------------
bool grad_enabled();
// While one lives, ops record no graph: for sampling, evaluation and finite differences.
struct NoGradGuard {
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;
private:
    bool prev_;
};

// A name scope: ops made while it lives are named "<outer>.<path>.<op>". Modules open one
// with their dotted path, so an activation says where it lives ("mid.attn.softmax").
struct NameScope {
    explicit NameScope(const std::string& part);
    ~NameScope();
    NameScope(const NameScope&) = delete;
    NameScope& operator=(const NameScope&) = delete;
};
std::string current_scope();

// Keep every intermediate gradient after backward (as if retain_grad() were called on each).
void set_retain_all_grads(bool on);
bool retain_all_grads();

// Anomaly detection: after each op's forward and each op's backward, check for NaN and Inf; the
// first one throws dl::Error naming the op, its name (module path and op), and the value or
// gradient that went bad: the output, or the gradient of input k. When a forward output is bad
// because an input already was (a NaN in a parameter, say), the message names that input too.
void set_detect_anomaly(bool on);
bool detect_anomaly();

// While one lives (and gradients are recorded), every Variable made on this thread is listed, in
// creation order: the nodes of one forward pass, for naming them without walking the graph
// (nn::make_names_unique). Recorders do not nest: an inner one takes over until it dies.
class NodeRecorder {
public:
    NodeRecorder();
    ~NodeRecorder();
    NodeRecorder(const NodeRecorder&) = delete;
    NodeRecorder& operator=(const NodeRecorder&) = delete;
    const std::vector<Variable>& nodes() const { return nodes_; }
    void add(const Variable& v) { nodes_.push_back(v); }

private:
    std::vector<Variable> nodes_;
    NodeRecorder* prev_;
};

// ---- the graph ----------------------------------------------------------------------------
// Every Variable that `root` depends on, inputs before the ops that use them (forward order).
std::vector<Variable> topological_order(const Variable& root);

}  // namespace dl
