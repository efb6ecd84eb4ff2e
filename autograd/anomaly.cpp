#include "autograd/anomaly.h"

#include <cmath>

#include "tensor/ops.h"

namespace dl {

namespace {

std::string bad_value(const Tensor& t, int64_t i) {
    double v = t.flat(i);
    return cat("element ", i, " is ", std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
}

// `more` is appended to the message (which input was already bad).
void check_finite(const Tensor& t, const std::string& what, const std::string& more = "") {
    int64_t bad = 0;
    if (all_finite(t, &bad)) return;
    fail("detect_anomaly: ", what, " is non-finite: ", bad_value(t, bad), more);
}

// For a forward check that failed: the first input that was non-finite already (a parameter or
// an input that came in bad), or "" when all were finite and this op made the first NaN/Inf.
std::string nonfinite_input(const std::vector<Variable>& inputs) {
    for (size_t k = 0; k < inputs.size(); k++) {
        int64_t bad = 0;
        if (inputs[k].defined() && !all_finite(inputs[k].value(), &bad))
            return cat("; its input ", k, ", ", describe(inputs[k]), ", was non-finite already: ", bad_value(inputs[k].value(), bad));
    }
    return "";
}

struct AnomalyCheck : Observer {
    void forward_done(const Variable& out, const std::vector<Variable>& inputs) override {
        if (!all_finite(out.value())) check_finite(out.value(), cat("forward of ", describe(out), ": the output"), nonfinite_input(inputs));
    }
    void after_backward(const Variable& v) override {
        const std::vector<Variable>& in = v.inputs();
        for (size_t k = 0; k < in.size(); k++)
            if (in[k].requires_grad() && in[k].grad().defined())
                check_finite(in[k].grad(), cat("backward of ", describe(v), ": the gradient of input ", k, ", ", describe(in[k])));
    }
};
thread_local AnomalyCheck g_check;
thread_local bool g_on = false;

}  // namespace

void set_detect_anomaly(bool on) {
    if (on) add_observer(&g_check);
    else remove_observer(&g_check);
    g_on = on;
}
bool detect_anomaly() { return g_on; }

}  // namespace dl
