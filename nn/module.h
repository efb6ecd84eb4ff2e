// Module: what a PyTorch user expects from nn.Module, for a model built once and trained long.
//
// A module has parameters (leaf Variables) and child modules, each registered under a name.
// named_parameters() walks them as PyTorch's state_dict does: a module's own parameters in
// registration order, then each child's, recursively, with dotted names
// ("down.1.res.0.conv1.weight"). The checkpoint keys are these names.
//
// Packing. pack_parameters(), called once on the root after it is built (the U-Net does it
// itself), moves every parameter into one flat buffer of P values, in named_parameters() order,
// and makes each parameter's Variable a view of its slice; their gradients are views of a second
// flat buffer. Backward then accumulates straight into that buffer, and Adam, EMA and clipping are
// single loops over P values (nn/optim.h). It also names each parameter Variable by its key,
// so gradient tables say where each one lives.
//
// Names of activations. A module's forward opens a dl::NameScope with its own (local) name, so
// an op made inside is named "<path>.<op>" ("mid.attn.softmax", "down.0.res.1.conv1.conv2d").
// Containers without a forward (ModuleList, a U-Net level) are opened by the code that walks
// them. make_names_unique() then suffixes repeats of a name within one forward as torch.fx does
// ("silu", "silu_1", "silu_2"), so every activation name is a key.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace dl::nn {

struct NamedTensor {
    std::string name;
    Tensor value;
};
// An ordered list of named tensors: a model's parameters, or a state shaped like them.
using StateDict = std::vector<NamedTensor>;

struct NamedParameter {
    std::string name;
    Variable var;
};

// Where one parameter lives in the flat buffers: values [offset, offset + numel) of P.
struct ParamSlot {
    std::string name;  // the state_dict key
    int64_t offset;
    Shape shape;
    int64_t numel;
};

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;  // modules hold their children by address
    Module& operator=(const Module&) = delete;

    // ---- structure ----
    const std::string& name() const { return name_; }  // the local name given by the parent
    std::vector<NamedParameter> named_parameters() const;
    std::vector<Variable> parameters() const;
    int64_t num_parameters() const;

    // ---- mode ----
    void train(bool on = true);  // this module and every descendant
    void eval() { train(false); }
    bool is_training() const { return training_; }

    // ---- state ----
    // The parameters' tensors under their keys. Shallow, as PyTorch's: the values are the
    // parameters' own storage, so clone them for a snapshot.
    StateDict state_dict() const;
    // Strict: a missing key, an unexpected key or a shape mismatch throws dl::Error listing each
    // key with both shapes, and nothing is copied. Values are converted to the model's dtype.
    void load_state_dict(const StateDict& sd);

    // Converts every parameter to dtype (float64 for gradchecks of the whole model, and back).
    // Values are kept (float32 -> float64 -> float32 is exact); gradients are dropped.
    void to(DType dtype);
    DType dtype() const;

    // ---- the flat buffers ----
    void pack_parameters();
    bool packed() const { return flat_params_.defined(); }
    // (P) every parameter back to back in named_parameters() order. Throws unless packed, or if
    // some parameter's value was replaced rather than written in place.
    Tensor& flat_parameters();
    // (P) the gradients: each parameter's gradient is a view of its slice (Variable::attach_grad),
    // so backward accumulates here and Variable::zero_grad zeroes the slice in place.
    Tensor& flat_grads();
    // The slices of the flat buffers, in named_parameters() order, computed once by
    // pack_parameters(): the one description of the layout that every view of it uses.
    const std::vector<ParamSlot>& layout() const;
    // Views of a flat tensor laid out like flat_parameters() (Adam's moments, the EMA), one per
    // parameter under its key: the bridge between flat states and checkpoints. Needs a packed module.
    StateDict views(const Tensor& flat) const;
    // Zeroes every parameter's gradient (the flat buffer when packed, re-attaching each view).
    void zero_grad();

    // The configuration a checkpoint records to rebuild the model ("model" metadata); "" if none.
    virtual std::string config_string() const { return ""; }

    // Opens a NameScope with this module's name; forward() starts with `auto scope = name_scope();`.
    NameScope name_scope() const { return NameScope(name_); }

protected:
    Variable register_parameter(const std::string& name, Tensor value);  // a leaf with requires_grad
    void register_module(const std::string& name, Module& child);         // child outlives no parent

private:
    void collect(const std::string& prefix, std::vector<NamedParameter>& out) const;
    void attach_grad_views();

    std::string name_;
    bool training_ = true;
    std::vector<NamedParameter> params_;                     // own parameters, local names
    std::vector<std::pair<std::string, Module*>> children_;  // in registration order
    Tensor flat_params_, flat_grads_;                        // (P) each, set by pack_parameters()
    std::vector<Variable> packed_;                           // the parameters, in flat order
    std::vector<ParamSlot> layout_;                          // their slices, in the same order
};

// A list of modules named "0", "1", ... (PyTorch's nn.ModuleList).
template <class M>
class ModuleList : public Module {
public:
    M& append(std::unique_ptr<M> m) {
        items_.push_back(std::move(m));
        register_module(std::to_string(items_.size() - 1), *items_.back());
        return *items_.back();
    }
    M& operator[](size_t i) const { return *items_.at(i); }
    size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }

private:
    std::vector<std::unique_ptr<M>> items_;
};

// Copies src into dst by name, strictly: every key of dst must be in src with the same shape,
// and src must have no other key; otherwise a dl::Error (prefixed by `what`) lists every
// missing key, unexpected key and shape mismatch, and nothing is copied. Converts dtypes.
void load_named(const StateDict& dst, const StateDict& src, const std::string& what);

// Renames v to "<current scope>.<local>", for results worth finding by name (q, k, v).
Variable named(Variable v, const std::string& local);

// Among nodes given in creation order (a NodeRecorder's, or graph_order()), the second, third ...
// Variable that carries an already-used name gets "_1", "_2", ... appended, as torch.fx names
// repeated calls. One pass with a hash map: no walk of the graph.
void make_names_unique(const std::vector<Variable>& nodes);

}  // namespace dl::nn
