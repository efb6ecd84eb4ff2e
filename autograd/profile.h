// Where the time of a step goes, op by op: while an OpProfile lives (an Observer of make_result
// and backward, autograd/variable.h), every op's forward and every backward closure is timed and
// counted under "<op> forward" / "<op> backward", with the FLOPs (conv2d, matmul, bmm, linear) or
// the bytes (every other op) it moved, for bench --train.
//
// A forward op is timed from the end of the op before it (or the last mark()) to its make_result,
// so the glue between two ops (module code, a reshape's bookkeeping) is charged to the op after
// it; the caller marks before a forward pass so that its own set-up is not charged to the first op.
// A backward closure is timed around its call, gradient accumulation included.
//
// FLOPs: 2 multiply-adds per output of a conv2d (2 B Cout Ho Wo Cin KH KW), matmul, bmm or linear
// (2 M N K); their backward counts the same again for each of the first two inputs (data, weight)
// that needs a gradient. Bytes: forward reads every input once and writes the output; backward
// reads the output's gradient and, for each input that needs one, reads the input and writes its
// gradient. These are what a kernel must move at least, not what it moves.
//
// A profile records the ops of the thread it was made on (the one that builds and runs the graph).
// With conv_shapes, each conv2d is keyed by its shape as well ("conv2d 3x3 32->64 28x28->14x14
// forward"), to see which layers of a network are slow.
#pragma once
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace dl {

struct OpTime {
    int64_t calls = 0;
    double seconds = 0;
    double flops = 0;  // 0 for ops measured in bytes
    double bytes = 0;
};

class OpProfile : public Observer {
public:
    explicit OpProfile(bool conv_shapes = false);
    ~OpProfile();
    OpProfile(const OpProfile&) = delete;
    OpProfile& operator=(const OpProfile&) = delete;

    // The next forward op's time starts now.
    void mark() { last_ = clock(); }
    // Work that is not an op (the optimizer, zero_grad), timed by the caller.
    void add(const std::string& key, double seconds, double flops = 0, double bytes = 0);
    // "<op> forward" / "<op> backward" (and the caller's keys) to their totals.
    const std::map<std::string, OpTime>& table() const { return table_; }
    void clear() { table_.clear(); }

    // The Observer's points (autograd/variable.h).
    void forward_done(const Variable& out, const std::vector<Variable>& inputs) override;
    void before_backward(const Variable& v, const Tensor& grad) override { started_ = clock(); }
    void after_backward(const Variable& v) override;

    static double clock() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

private:
    // "<op> <pass>", or with conv_shapes a conv2d's shape between the two
    std::string key(const char* op, const Tensor& out, const std::vector<Variable>& inputs, const char* pass) const;

    std::map<std::string, OpTime> table_;
    double last_;
    double started_ = 0;  // the clock when the closure being timed began
    OpProfile* prev_;
    bool conv_shapes_;
};

// The profile recording on this thread, or nullptr.
OpProfile* active_op_profile();

}  // namespace dl
