// Every differentiable op, one family per file, forward and backward side by side:
//
//   elementwise.cpp  add sub mul div (broadcasting), scalar add/mul, neg
//   unary.cpp        exp log sqrt sin cos tanh sigmoid silu square
//   reduce.cpp       sum mean max over dims
//   matmul.cpp       matmul bmm (transpose flags), linear
//   shape.cpp        reshape concat slice permute gather
//   loss.cpp         mse_loss, softmax over the last dim, cross_entropy
//   conv.cpp         conv2d
//   norm.cpp         group_norm
//   resample.cpp     upsample_nearest2d, avg_pool2d
//   dropout.cpp      dropout
//
// Each op checks shapes and dtypes and throws dl::Error naming the op; each backward hands every
// input that requires a gradient its part through Variable::grad_slot(), overwriting a first part
// and adding a later one. Every op has a gradcheck test.
#pragma once
#include <vector>

#include "autograd/variable.h"
#include "tensor/rng.h"

namespace dl {

// elementwise.cpp: NumPy broadcasting; backward sums the gradient back to each input's shape
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable add(const Variable& a, double s);
Variable mul(const Variable& a, double s);
Variable neg(const Variable& a);
inline Variable operator+(const Variable& a, const Variable& b) { return add(a, b); }
inline Variable operator-(const Variable& a, const Variable& b) { return sub(a, b); }
inline Variable operator*(const Variable& a, const Variable& b) { return mul(a, b); }
inline Variable operator/(const Variable& a, const Variable& b) { return div(a, b); }
inline Variable operator+(const Variable& a, double s) { return add(a, s); }
inline Variable operator*(const Variable& a, double s) { return mul(a, s); }
inline Variable operator*(double s, const Variable& a) { return mul(a, s); }
inline Variable operator-(const Variable& a) { return neg(a); }

// unary.cpp
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable sqrt(const Variable& x);
Variable sin(const Variable& x);
Variable cos(const Variable& x);
Variable tanh(const Variable& x);
Variable sigmoid(const Variable& x);
Variable silu(const Variable& x);
Variable square(const Variable& x);

// reduce.cpp: dims may be negative; empty dims reduce over everything
Variable sum(const Variable& x, std::vector<int> dims = {}, bool keepdim = false);
Variable mean(const Variable& x, std::vector<int> dims = {}, bool keepdim = false);
Variable max(const Variable& x, std::vector<int> dims = {}, bool keepdim = false);

// matmul.cpp
Variable matmul(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
Variable bmm(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
// x (N, in), weight (out, in), bias (out) or undefined -> x weight^T + bias (N, out)
Variable linear(const Variable& x, const Variable& weight, const Variable& bias);

// shape.cpp
Variable reshape(const Variable& x, Shape shape);
Variable concat(const std::vector<Variable>& xs, int dim);
Variable slice(const Variable& x, int dim, int64_t start, int64_t end);
Variable permute(const Variable& x, const std::vector<int>& dims);
Variable gather(const Variable& src, const std::vector<int64_t>& index);

// loss.cpp
Variable mse_loss(const Variable& pred, const Variable& target);  // mean over all elements
Variable softmax(const Variable& x);                              // over the last dim
// logits (B, K), labels in [0, K) -> the mean over the batch of -log softmax(logits)[label]
Variable cross_entropy(const Variable& logits, const std::vector<int64_t>& labels);

// conv.cpp: x (B, Cin, H, W), weight (Cout, Cin, KH, KW), bias (Cout) or undefined
Variable conv2d(const Variable& x, const Variable& weight, const Variable& bias, int64_t stride = 1, int64_t pad = 0);

// norm.cpp: x (B, C, ...), gamma and beta (C); statistics per sample over C/groups channels
// silu: silu(group_norm(...)) as one op ("group_norm_silu"), one pass over the data each way
Variable group_norm(const Variable& x, const Variable& gamma, const Variable& beta, int64_t groups, double eps = 1e-5,
                    bool silu = false);

// resample.cpp: (B, C, H, W) -> (B, C, 2H, 2W); (B, C, H, W) -> (B, C, H/k, W/k), the mean of each k x k window
Variable upsample_nearest2d(const Variable& x);
Variable avg_pool2d(const Variable& x, int64_t k);

// dropout.cpp: zeroes each element with probability p and scales the rest by 1 / (1 - p);
// the mask comes from `gen`. Identity when !training or p == 0.
Variable dropout(const Variable& x, double p, Philox& gen, bool training = true);

}  // namespace dl
