#include "autograd/profile.h"

#include <cstring>

namespace dl {

namespace {
thread_local OpProfile* g_profile = nullptr;

// The FLOPs of one forward of op (see profile.h), 0 for the ops counted in bytes.
double forward_flops(const char* op, const Tensor& out, const std::vector<Variable>& inputs) {
    if (inputs.size() < 2 || !inputs[0].defined() || !inputs[1].defined()) return 0;
    const double n_out = double(out.numel());
    if (n_out == 0) return 0;
    if (std::strcmp(op, "conv2d") == 0) {  // weight (Cout, Cin, KH, KW): Cin KH KW multiply-adds per output
        const Shape& w = inputs[1].shape();
        return 2 * n_out * double(w[1] * w[2] * w[3]);
    }
    if (std::strcmp(op, "linear") == 0)  // weight (out, in)
        return 2 * n_out * double(inputs[1].shape()[1]);
    if (std::strcmp(op, "matmul") == 0 || std::strcmp(op, "bmm") == 0) {
        // out (..., M, N) from a (..., M, K): K = numel(a) / (numel(out) / N)
        const double rows = n_out / double(out.shape().back());
        return 2 * n_out * (double(inputs[0].numel()) / rows);
    }
    return 0;
}

bool needs_grad(const Variable& v) { return v.defined() && v.requires_grad(); }
}  // namespace

OpProfile* active_op_profile() { return g_profile; }

// An inner profile takes over from the one before it until it dies.
OpProfile::OpProfile(bool conv_shapes) : last_(clock()), prev_(g_profile), conv_shapes_(conv_shapes) {
    if (prev_) remove_observer(prev_);
    add_observer(this);
    g_profile = this;
}

std::string OpProfile::key(const char* op, const Tensor& out, const std::vector<Variable>& inputs, const char* pass) const {
    if (conv_shapes_ && std::strcmp(op, "conv2d") == 0 && inputs.size() >= 2 && out.ndim() == 4) {
        const Shape &x = inputs[0].shape(), &w = inputs[1].shape(), &y = out.shape();  // (B, Cin, H, W), (Cout, Cin, KH, KW)
        return cat(op, " ", w[2], "x", w[3], " ", x[1], "->", y[1], " ", x[2], "x", x[3], "->", y[2], "x", y[3], " ", pass);
    }
    return cat(op, " ", pass);
}
OpProfile::~OpProfile() {
    remove_observer(this);
    if (prev_) add_observer(prev_);
    g_profile = prev_;
}

void OpProfile::add(const std::string& key, double seconds, double flops, double bytes) {
    OpTime& t = table_[key];
    t.calls++;
    t.seconds += seconds;
    t.flops += flops;
    t.bytes += bytes;
}

void OpProfile::forward_done(const Variable& result, const std::vector<Variable>& inputs) {
    const double now = clock();
    const char* op = result.op();
    const Tensor& out = result.value();
    double flops = forward_flops(op, out, inputs), bytes = 0;
    if (flops == 0 && std::strcmp(op, "reshape") != 0) {  // a reshape is a view: nothing moves
        bytes = double(out.nbytes());
        for (const Variable& in : inputs)
            if (in.defined()) bytes += double(in.value().nbytes());
    }
    add(key(op, out, inputs, "forward"), now - last_, flops, bytes);
    last_ = clock();
}

void OpProfile::after_backward(const Variable& v) {
    if (v.is_leaf()) return;  // no closure ran
    const double seconds = clock() - started_;
    const VarImpl& node = *v.impl();
    const std::vector<Variable>& in = node.inputs;
    double flops = 0, bytes = 0;
    const double f = forward_flops(node.op, node.value, in);
    if (f > 0) {
        for (size_t k = 0; k < 2 && k < in.size(); k++) flops += needs_grad(in[k]) ? f : 0;
    } else if (std::strcmp(node.op, "reshape") != 0) {
        bytes = double(node.value.nbytes());
        for (const Variable& v : in)
            if (needs_grad(v)) bytes += 2 * double(v.value().nbytes());
    }
    add(key(node.op, node.value, in, "backward"), seconds, flops, bytes);
}

}  // namespace dl
