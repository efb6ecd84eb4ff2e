// Gradient checking by central finite differences, in float64 (PyTorch's gradcheck also insists
// on double: in float32 the difference quotient loses most of its digits to rounding).
//
// For each checked coordinate i of each input x:
//   numeric_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
// is compared with analytic_i, the gradient backward() produced. A non-scalar output y is turned
// into the scalar L = sum(y * r) with a fixed random r, which checks the vector-Jacobian product
// J^T r that backward computes. A coordinate passes when |analytic - numeric| <= atol + rtol |numeric|.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace dl {

struct GradcheckOptions {
    double eps = 1e-6;        // finite-difference step
    double atol = 1e-8;       // absolute tolerance
    double rtol = 1e-6;       // relative tolerance
    int64_t max_coords = -1;  // per input: check this many random coordinates (-1: all)
    uint64_t seed = 0;        // for the projection r and the sampled coordinates
    // Called after each evaluation of the loss (one with backward, then two per coordinate): a
    // progress line for checks that take minutes.
    std::function<void(int64_t done, int64_t total)> on_eval;
};

struct GradcheckEntry {
    std::string name;          // the input's name, or "input <k>"
    int64_t checked = 0;       // coordinates compared
    double max_abs_err = 0;    // worst |analytic - numeric|
    double max_rel_err = 0;    // worst |analytic - numeric| / max(|analytic|, |numeric|), where that exceeds atol
    int64_t worst_index = -1;  // flat index of the worst coordinate
    double analytic = 0, numeric = 0;  // at worst_index
    bool ok = true;
};

struct GradcheckReport {
    std::vector<GradcheckEntry> entries;
    bool ok = true;
    std::string str() const;  // one line per input
};

// f maps float64 leaf Variables (requiring grad) to an output; inputs are copied, not changed.
GradcheckReport gradcheck(const std::function<Variable(const std::vector<Variable>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

// The same for a scalar loss over given leaves (a model's parameters, say): loss() recomputes
// the loss from the leaves' current values. The leaves' values are perturbed in place and
// restored; their .grad is overwritten with the analytic gradient.
GradcheckReport gradcheck_leaves(const std::function<Variable()>& loss, const std::vector<Variable>& leaves,
                                 const GradcheckOptions& opt = {});

}  // namespace dl
