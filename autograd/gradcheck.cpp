#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/ops.h"
#include "tensor/rng.h"

namespace dl {

std::string GradcheckReport::str() const {
    std::ostringstream os;
    for (const auto& e : entries)
        os << (e.ok ? "ok   " : "FAIL ") << e.name << ": " << e.checked << " coords, max abs err " << e.max_abs_err
           << ", max rel err " << e.max_rel_err << " (index " << e.worst_index << ": analytic " << e.analytic << ", numeric "
           << e.numeric << ")\n";
    return os.str();
}

GradcheckReport gradcheck_leaves(const std::function<Variable()>& loss_fn, const std::vector<Variable>& leaves,
                                 const GradcheckOptions& opt) {
    for (const Variable& v : leaves)
        if (v.dtype() != DType::F64) fail("gradcheck: ", v.name().empty() ? "an input" : v.name(), " is ", dtype_name(v.dtype()), "; finite differences need float64");
    auto n_coords = [&](const Variable& v) { return opt.max_coords < 0 ? v.numel() : std::min(opt.max_coords, v.numel()); };
    int64_t done = 0, total = 1;
    for (const Variable& v : leaves) total += 2 * n_coords(v);
    auto loss = [&]() {
        Variable L = loss_fn();
        if (opt.on_eval) opt.on_eval(++done, total);
        return L;
    };

    // analytic gradients
    for (const Variable& v : leaves) const_cast<Variable&>(v).zero_grad();
    Variable L = loss();
    if (L.numel() != 1) fail("gradcheck: the loss must be a scalar, got ", shape_str(L.shape()));
    L.backward();

    GradcheckReport report;
    Philox pick(opt.seed + 1);
    for (size_t k = 0; k < leaves.size(); k++) {
        Variable v = leaves[k];
        GradcheckEntry e;
        e.name = v.name().empty() ? cat("input ", k) : v.name();
        Tensor analytic = v.grad().defined() ? v.grad() : Tensor::zeros(v.shape(), DType::F64);
        std::vector<int64_t> coords;
        if (n_coords(v) == v.numel()) {
            for (int64_t i = 0; i < v.numel(); i++) coords.push_back(i);
        } else {
            coords = randint(n_coords(v), v.numel(), pick);
        }
        double* x = v.value().data<double>();
        for (int64_t i : coords) {
            double saved = x[i], plus, minus;
            {
                NoGradGuard ng;
                x[i] = saved + opt.eps;
                plus = loss().value().item();
                x[i] = saved - opt.eps;
                minus = loss().value().item();
                x[i] = saved;
            }
            double numeric = (plus - minus) / (2 * opt.eps), a = analytic.data<double>()[i];
            double err = std::abs(a - numeric), scale = std::max(std::abs(a), std::abs(numeric));
            bool pass = err <= opt.atol + opt.rtol * std::abs(numeric);
            e.checked++;
            if (scale > opt.atol) e.max_rel_err = std::max(e.max_rel_err, err / scale);
            if (err > e.max_abs_err || e.worst_index < 0 || (!pass && e.ok)) {
                e.max_abs_err = std::max(e.max_abs_err, err);
                e.worst_index = i;
                e.analytic = a;
                e.numeric = numeric;
            }
            e.ok = e.ok && pass;
        }
        report.ok = report.ok && e.ok;
        report.entries.push_back(e);
    }
    return report;
}

GradcheckReport gradcheck(const std::function<Variable(const std::vector<Variable>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
    std::vector<Variable> leaves;
    for (size_t k = 0; k < inputs.size(); k++) {
        if (inputs[k].dtype() != DType::F64) fail("gradcheck: input ", k, " is ", dtype_name(inputs[k].dtype()), "; finite differences need float64");
        leaves.emplace_back(inputs[k].clone(), true, cat("input ", k));
    }
    Variable r;  // the projection for non-scalar outputs, made once so every evaluation uses it
    auto loss = [&]() {
        Variable y = f(leaves);
        if (y.numel() == 1) return y.numel() == 1 && y.shape().empty() ? y : reshape(y, {});
        if (!r.defined()) {
            Philox g(opt.seed);
            r = Variable(randn(y.shape(), g, DType::F64));
        }
        return sum(mul(y, r));
    };
    return gradcheck_leaves(loss, leaves, opt);
}

}  // namespace dl
