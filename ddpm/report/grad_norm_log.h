// Per-parameter-tensor gradient norms during training, every N steps: which layers get the
// gradient, and which blow up or die, over a run.
//
// The norms come straight from the flat gradient buffer (Module::flat_grads(), P values): each
// parameter owns a contiguous slice of it, so one pass over P values gives all of them. That is
// cheap enough to do every N steps before clipping.
//
//   grad_norms.csv   step,<key>,<key>,...   one row per recorded step, one column per parameter
//   grad_norms.svg   the `top` tensors with the largest norms over the run, against the step
#pragma once
#include <string>
#include <vector>

#include "nn/module.h"

namespace dl::ddpm {

class GradNormLog {
public:
    // One column per slice of the model's flat buffers (Module::layout()).
    explicit GradNormLog(const nn::Module& model);

    // L2 norm of each parameter's slice of flat_grads (P), recorded for `step` (replacing a row
    // already there for that step: train records before it knows whether a step is skipped).
    void record(int64_t step, const Tensor& flat_grads);

    // Reads path (as written by write_csv) keeping rows with step <= max_step: a resumed run
    // continues its curves. A missing file is an empty log; another model's columns, or a
    // malformed row, is a dl::Error naming the file and the line.
    void read_csv(const std::string& path, int64_t max_step);
    void write_csv(const std::string& path) const;  // atomic
    // The `top` tensors ranked by their largest norm over the rows, log y axis.
    void write_svg(const std::string& path, const std::string& title, size_t top = 8) const;

    struct Row {
        int64_t step;
        std::vector<double> norms;  // one per parameter, in `slots` order
    };
    std::vector<nn::ParamSlot> slots;  // the parameters' keys and slices, in flat order
    std::vector<Row> rows;
};

}  // namespace dl::ddpm
