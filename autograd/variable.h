// Reverse-mode automatic differentiation, micrograd's algorithm over tensors.
//
// A Variable wraps a Tensor (its value) and, when it was made by an op while gradients are
// recorded, the op's name, its inputs, and a closure that turns the gradient of this Variable
// into gradients of the inputs. backward() sorts the graph that ends here topologically and runs
// the closures from the output back to the leaves; each closure hands each input its part through
// grad_slot(), so a Variable used twice receives the sum of both paths.
//
// Copying a Variable is shallow: copies share value, gradient and graph node.
//
// Whatever else looks at a graph while it is made and walked (hooks, retained gradients, anomaly
// checks, the profiler) is an Observer that backward() and make_result call at fixed points.
// Every Variable has a name (module path and op, e.g. "down.0.res.1.conv2"), and
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
    bool graph_freed = false;         // backward already ran through here and released the graph
    bool grad_attached = false;       // grad is an outside buffer (attach_grad), written in place
    std::string name;                 // module path and op; "" for unnamed leaves
    const char* op = "leaf";          // the op that made it ("leaf" for inputs and parameters)
    uint64_t id = 0;                  // creation order: a topological order of the forward pass
    std::vector<Variable> inputs;     // the op's inputs (graph edges); cleared when freed
    std::function<void(const Tensor& dout)> backward;  // dout: this Variable's gradient
    std::vector<Hook> hooks;          // register_hook
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

    // The one way a backward closure hands this Variable its part of the gradient:
    //     auto [g, accumulate] = x.grad_slot();
    // accumulate false: the part is the first, and g is empty for the closure to set: to a tensor
    //   of its own, taken as it is (an add hands on dz itself, a reshape a view of it: no copy),
    //       if (accumulate) add_(g, part); else g = part;
    //   or to a new buffer of this Variable's shape and dtype that a kernel overwrites whole (no
    //   zero fill, no read of zeros; a kernel that can only add gets Tensor::zeros).
    // accumulate true: g holds the gradient so far and is this Variable's alone (copy on write: a
    //   gradient still shared with another holder is copied first); the part is added into it.
    struct GradSlot {
        Tensor& grad;
        bool accumulate;
    };
    GradSlot grad_slot() const;

    // The next backward starts from zero: a gradient of its own is dropped, an attached buffer
    // is zeroed in place and stays attached.
    void zero_grad();
    // Makes g (same shape and dtype; may be a view, e.g. of a model's flat gradient buffer) the
    // storage of this leaf's gradient: backward adds into it in place. An undefined g detaches it.
    void attach_grad(Tensor g);
    // hook(v, grad) is called with this Variable's whole gradient when backward reaches it, before
    // its closure runs (by an Observer that register_hook adds on this thread).
    void register_hook(Hook hook);
    // Keeps this Variable's gradient after backward although it is not a leaf: a hook that puts
    // the gradient back.
    void retain_grad();

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

// ---- observers ----------------------------------------------------------------------------
// What watches a graph being made and walked (hooks, retained gradients, anomaly checks, the
// profiler), called at fixed points:
//   forward_done     make_result made an op's output, before it records the graph
//   before_backward  backward reached v (a node with a gradient, in reverse topological order):
//                    grad is v's whole gradient, and v's closure runs next (a leaf has none)
//   after_backward   v's closure has run: its inputs hold their parts; the graph is still there
// An op's gradient leaves the node when backward reaches it and is dropped once the closure has
// run; an observer that keeps it puts it back (v.impl()->grad = grad). Registered per thread,
// called in the order registered.
struct Observer {
    virtual ~Observer() = default;
    virtual void forward_done(const Variable& out, const std::vector<Variable>& inputs) {}
    virtual void before_backward(const Variable& v, const Tensor& grad) {}
    virtual void after_backward(const Variable& v) {}
};
void add_observer(Observer* o);  // once: a second add of the same observer does nothing
void remove_observer(Observer* o);

// "op 'exp' (exp) float32 (2, 3)": the op, the name, dtype and shape, for messages.
std::string describe(const Variable& v);

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
