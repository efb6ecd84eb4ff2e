// Anomaly detection, an Observer: after each op's forward and each op's backward, check for NaN
// and Inf; the first one throws dl::Error naming the op, its name (module path and op), and the
// value or gradient that went bad: the output, or the gradient of input k. When a forward output
// is bad because an input already was (a NaN in a parameter, say), the message names that input
// too. On or off for the calling thread.
#pragma once
#include "autograd/variable.h"

namespace dl {

void set_detect_anomaly(bool on);
bool detect_anomaly();

}  // namespace dl
