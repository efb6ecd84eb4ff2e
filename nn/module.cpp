#include "nn/module.h"

#include <algorithm>
#include <unordered_map>

namespace dl::nn {

// ---- structure ----------------------------------------------------------------------------
Variable Module::register_parameter(const std::string& name, Tensor value) {
    for (const auto& p : params_)
        if (p.name == name) fail("register_parameter: \"", name, "\" is already registered");
    Variable v(std::move(value), /*requires_grad=*/true, name);
    params_.push_back({name, v});
    return v;
}

void Module::register_module(const std::string& name, Module& child) {
    for (const auto& c : children_)
        if (c.first == name) fail("register_module: \"", name, "\" is already registered");
    child.name_ = name;
    children_.emplace_back(name, &child);
}

// PyTorch's state_dict order: own parameters first, then each child's, depth first.
void Module::collect(const std::string& prefix, std::vector<NamedParameter>& out) const {
    for (const auto& p : params_) out.push_back({prefix + p.name, p.var});
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<NamedParameter> Module::named_parameters() const {
    std::vector<NamedParameter> out;
    collect("", out);
    return out;
}

std::vector<Variable> Module::parameters() const {
    std::vector<Variable> out;
    for (auto& p : named_parameters()) out.push_back(p.var);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (const auto& p : named_parameters()) n += p.var.numel();
    return n;
}

void Module::train(bool on) {
    training_ = on;
    for (auto& c : children_) c.second->train(on);
}

DType Module::dtype() const {
    auto ps = named_parameters();
    if (ps.empty()) return DType::F32;
    for (const auto& p : ps)
        if (p.var.dtype() != ps[0].var.dtype())
            fail("Module::dtype: parameters have mixed dtypes: ", ps[0].name, " is ", dtype_name(ps[0].var.dtype()), ", ", p.name,
                 " is ", dtype_name(p.var.dtype()));
    return ps[0].var.dtype();
}

// ---- state --------------------------------------------------------------------------------
StateDict Module::state_dict() const {
    StateDict sd;
    for (auto& p : named_parameters()) sd.push_back({p.name, p.var.value()});
    return sd;
}

void load_named(const StateDict& dst, const StateDict& src, const std::string& what) {
    std::unordered_map<std::string, const Tensor*> given;
    for (const auto& e : src) given[e.name] = &e.value;
    std::vector<std::string> problems;
    std::unordered_map<std::string, bool> wanted;
    for (const auto& e : dst) {
        wanted[e.name] = true;
        auto it = given.find(e.name);
        if (it == given.end())
            problems.push_back(cat("missing key \"", e.name, "\" (expected shape ", shape_str(e.value.shape()), ")"));
        else if (it->second->shape() != e.value.shape())
            problems.push_back(cat("shape mismatch for \"", e.name, "\": expected ", shape_str(e.value.shape()), ", found ",
                                   shape_str(it->second->shape())));
    }
    for (const auto& e : src)
        if (!wanted.count(e.name)) problems.push_back(cat("unexpected key \"", e.name, "\" (shape ", shape_str(e.value.shape()), ")"));
    if (!problems.empty()) {
        std::string msg = cat(what, ": ", problems.size(), problems.size() == 1 ? " problem" : " problems");
        for (size_t i = 0; i < problems.size() && i < 20; i++) msg += "; " + problems[i];
        if (problems.size() > 20) msg += cat("; and ", problems.size() - 20, " more");
        fail(msg);
    }
    for (const auto& e : dst) {
        const Tensor& s = *given[e.name];
        Tensor d = e.value;  // a handle on the destination's storage
        d.copy_from(s.dtype() == d.dtype() ? s : s.to(d.dtype()));
    }
}

void Module::load_state_dict(const StateDict& sd) { load_named(state_dict(), sd, "load_state_dict"); }

void Module::to(DType dtype) {
    bool was_packed = packed();
    for (auto& p : named_parameters()) {
        p.var.attach_grad(Tensor());  // detached and dropped: the flat buffers are rebuilt below
        if (p.var.dtype() != dtype) p.var.value() = p.var.value().to(dtype);
    }
    flat_params_ = flat_grads_ = Tensor();
    packed_.clear();
    layout_.clear();
    if (was_packed) pack_parameters();
}

// ---- the flat buffers ---------------------------------------------------------------------
void Module::pack_parameters() {
    auto ps = named_parameters();
    DType dt = dtype();
    packed_.clear();
    layout_.clear();
    int64_t total = 0;
    for (auto& p : ps) {
        layout_.push_back({p.name, total, p.var.shape(), p.var.numel()});
        packed_.push_back(p.var);
        total += p.var.numel();
    }
    flat_params_ = Tensor({total}, dt);  // (P)
    StateDict slices = views(flat_params_);
    for (size_t k = 0; k < ps.size(); k++) {
        slices[k].value.copy_from(ps[k].var.value());
        ps[k].var.value() = slices[k].value;
        ps[k].var.set_name(ps[k].name);
    }
    flat_grads_ = Tensor::zeros({total}, dt);  // (P)
    attach_grad_views();
}

// Makes each parameter's gradient the view of its slice of flat_grads_.
void Module::attach_grad_views() {
    StateDict slices = views(flat_grads_);
    for (size_t k = 0; k < packed_.size(); k++) packed_[k].attach_grad(slices[k].value);
}

const std::vector<ParamSlot>& Module::layout() const {
    if (!packed()) fail("Module::layout: the parameters are not packed; call pack_parameters() on the root module");
    return layout_;
}

Tensor& Module::flat_parameters() {
    for (size_t k = 0; k < layout().size(); k++) {
        const Variable& v = packed_[k];
        const char* expect = static_cast<const char*>(flat_params_.raw()) + size_t(layout_[k].offset) * dtype_size(flat_params_.dtype());
        if (v.value().raw() != expect || v.value().dtype() != flat_params_.dtype())
            fail("Module::flat_parameters: parameter ", v.name(), " no longer lives in the flat buffer (its value was replaced, not written in place)");
    }
    return flat_params_;
}

Tensor& Module::flat_grads() {
    if (!packed()) fail("Module::flat_grads: the parameters are not packed; call pack_parameters() on the root module");
    return flat_grads_;
}

StateDict Module::views(const Tensor& flat) const {
    const ParamSlot* last = layout().empty() ? nullptr : &layout_.back();
    int64_t total = last ? last->offset + last->numel : 0;
    if (flat.ndim() != 1 || flat.numel() != total)
        fail("Module::views: expected a flat tensor of ", total, " values (the parameter count), got ", shape_str(flat.shape()));
    StateDict out;
    for (const ParamSlot& s : layout_) out.push_back({s.name, flat.rows(s.offset, s.numel).reshape(s.shape)});
    return out;
}

void Module::zero_grad() {
    if (packed()) {
        flat_grads_.zero_();
        attach_grad_views();
    } else {
        for (auto& p : named_parameters()) p.var.zero_grad();
    }
}

// ---- names --------------------------------------------------------------------------------
Variable named(Variable v, const std::string& local) {
    std::string scope = current_scope();
    v.set_name(scope.empty() ? local : scope + "." + local);
    return v;
}

void make_names_unique(const std::vector<Variable>& nodes) {
    std::unordered_map<std::string, int> seen;  // name -> how many times it was used so far
    for (Variable v : nodes) {
        if (v.name().empty()) continue;
        int n = seen[v.name()]++;
        if (n == 0) continue;
        std::string renamed = cat(v.name(), "_", n);
        while (seen.count(renamed)) renamed = cat(v.name(), "_", ++n);  // a name already ending in _n
        seen[renamed]++;
        v.set_name(renamed);
    }
}

}  // namespace dl::nn
