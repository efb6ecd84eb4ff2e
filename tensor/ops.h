// Operations on tensors, without gradients: the plain functions that autograd/ builds on.
//
// These are written once as templates over float and double. Broadcasting follows NumPy: shapes
// are aligned at their last dimension and a dimension of 1 stretches to match the other.
// Each op checks its operands and throws dl::Error naming the op and the shapes or dtypes.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace dl {

// ---- elementwise --------------------------------------------------------------------------
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);

// In place, for gradient accumulation: acc += x (same shape and dtype), acc += alpha * x.
void add_(Tensor& acc, const Tensor& x);
void axpy_(Tensor& acc, double alpha, const Tensor& x);

Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x)
Tensor square(const Tensor& x);

// ---- reductions ---------------------------------------------------------------------------
// dims may be negative; an empty dims list reduces over everything.
Tensor sum(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
// Maximum over dims; `argmax` (optional) receives, for each output element, the flat index into
// x of the first maximum, which is where max's backward sends the gradient.
Tensor max(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false, std::vector<int64_t>* argmax = nullptr);
// Copies x broadcast up to `shape`, and its inverse: sums x down to `shape`.
Tensor expand(const Tensor& x, const Shape& shape);
Tensor sum_to_shape(const Tensor& x, const Shape& shape);
std::vector<int> normalize_dims(std::vector<int> dims, int ndim, const char* op);

// ---- linear algebra -----------------------------------------------------------------------
// (M,K) x (K,N) -> (M,N); trans_a means a is stored as (K,M), trans_b means b is stored as (N,K).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// The same per batch: (Bt,M,K) x (Bt,K,N) -> (Bt,M,N).
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// ---- layout -------------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& xs, int dim);
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end);  // [start, end) along dim, copied
// Writes src into the [start, start + src.dim(dim)) slab of dst along dim, with +=.
void slice_backward_(Tensor& dst, const Tensor& src, int dim, int64_t start);
Tensor permute(const Tensor& x, const std::vector<int>& dims);  // copied
// out[i, ...] = src[index[i], ...]: rows of src picked by index (per-sample schedule constants).
Tensor gather(const Tensor& src, const std::vector<int64_t>& index);
// dst[index[i], ...] += src[i, ...], the backward of gather.
void scatter_add_(Tensor& dst, const std::vector<int64_t>& index, const Tensor& src);

// ---- checks -------------------------------------------------------------------------------
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_same_shape(const Tensor& a, const Tensor& b, const char* op);
bool all_finite(const Tensor& x, int64_t* first_bad = nullptr);
double max_abs_diff(const Tensor& a, const Tensor& b);  // for tests

}  // namespace dl
