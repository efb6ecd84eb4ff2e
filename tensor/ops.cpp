#include "tensor/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "tensor/gemm.h"

namespace dl {

// Work below this many elements is not worth waking the OpenMP threads for.
constexpr int64_t kParallelMin = 1 << 15;

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
    if (a.dtype() != b.dtype()) fail(op, ": dtypes differ: ", dtype_name(a.dtype()), " ", shape_str(a.shape()), " and ", dtype_name(b.dtype()), " ", shape_str(b.shape()));
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
    if (a.shape() != b.shape()) fail(op, ": shapes differ: ", shape_str(a.shape()), " and ", shape_str(b.shape()));
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (size_t i = 0; i < n; i++) {
        int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        if (da != db && da != 1 && db != 1) fail(op, ": shapes ", shape_str(a), " and ", shape_str(b), " do not broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// ---- broadcasting iteration ---------------------------------------------------------------
// The strides (in elements) of `in` seen through the broadcast `out` shape: 0 where in has a 1.
static std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
    std::vector<int64_t> s(out.size(), 0);
    int64_t stride = 1;
    for (size_t k = 0; k < in.size(); k++) {
        size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
        s[o] = in[i] == 1 ? 0 : stride;
        stride *= in[i];
    }
    return s;
}

// A broadcast loop nest with adjacent dims merged where both operands allow it, so
// (B,C,H,W) + (B,C,1,1) runs as (B*C) rows of H*W with the second operand constant per row.
struct BroadcastPlan {
    std::vector<int64_t> dims, sa, sb;  // outer dims ..., inner dim last
};

static BroadcastPlan plan_broadcast(const Shape& a, const Shape& b, const Shape& out) {
    auto sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
    BroadcastPlan p;
    for (size_t i = 0; i < out.size(); i++) {
        if (out[i] == 1) continue;
        if (!p.dims.empty() && p.sa.back() == sa[i] * out[i] && p.sb.back() == sb[i] * out[i]) {
            p.dims.back() *= out[i];
            p.sa.back() = sa[i];
            p.sb.back() = sb[i];
        } else {
            p.dims.push_back(out[i]);
            p.sa.push_back(sa[i]);
            p.sb.push_back(sb[i]);
        }
    }
    if (p.dims.empty()) p = {{1}, {0}, {0}};
    return p;
}

template <class T, class F>
static void broadcast_apply(const T* a, const T* b, T* out, const BroadcastPlan& p, F f) {
    size_t nd = p.dims.size();
    int64_t inner = p.dims[nd - 1], ia = p.sa[nd - 1], ib = p.sb[nd - 1];
    int64_t outer = 1;
    for (size_t i = 0; i + 1 < nd; i++) outer *= p.dims[i];
    // few long rows (two same-shape operands are one row) are split into pieces for the team
    const int64_t split = outer < 64 ? std::max<int64_t>(1, inner / 8192) : 1, piece = (inner + split - 1) / split;
#pragma omp parallel for schedule(static) if (outer * inner > kParallelMin && outer * split > 1)
    for (int64_t task = 0; task < outer * split; task++) {
        const int64_t o = task / split, j0 = task % split * piece, j1 = std::min(inner, j0 + piece);
        int64_t offa = 0, offb = 0, rem = o;
        for (size_t i = nd - 1; i-- > 0;) {
            int64_t idx = rem % p.dims[i];
            rem /= p.dims[i];
            offa += idx * p.sa[i];
            offb += idx * p.sb[i];
        }
        T* y = out + o * inner;
        const T *pa = a + offa, *pb = b + offb;
        if (ia == 1 && ib == 1)
            for (int64_t j = j0; j < j1; j++) y[j] = f(pa[j], pb[j]);
        else if (ia == 1 && ib == 0)
            for (int64_t j = j0; j < j1; j++) y[j] = f(pa[j], pb[0]);
        else if (ia == 0 && ib == 1)
            for (int64_t j = j0; j < j1; j++) y[j] = f(pa[0], pb[j]);
        else
            for (int64_t j = j0; j < j1; j++) y[j] = f(pa[j * ia], pb[j * ib]);
    }
}

template <class F>
static Tensor binary(const Tensor& a, const Tensor& b, const char* op, F f) {
    check_same_dtype(a, b, op);
    Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
    Tensor out(shape, a.dtype());
    BroadcastPlan plan = plan_broadcast(a.shape(), b.shape(), shape);
    dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        broadcast_apply<T>(a.data<T>(), b.data<T>(), out.data<T>(), plan, [&](T x, T y) { return T(f(x, y)); });
    });
    return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, "add", [](auto x, auto y) { return x + y; }); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, "sub", [](auto x, auto y) { return x - y; }); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, "mul", [](auto x, auto y) { return x * y; }); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, "div", [](auto x, auto y) { return x / y; }); }

template <class F>
static Tensor unary(const Tensor& x, F f) {
    Tensor out(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* in = x.data<T>();
        T* y = out.data<T>();
        int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; i++) y[i] = f(in[i]);
    });
    return out;
}

Tensor add_scalar(const Tensor& a, double s) {
    return unary(a, [s](auto x) { return decltype(x)(x + s); });
}
Tensor mul_scalar(const Tensor& a, double s) {
    return unary(a, [s](auto x) { return decltype(x)(x * s); });
}
Tensor neg(const Tensor& a) { return unary(a, [](auto x) { return -x; }); }
Tensor exp(const Tensor& x) { return unary(x, [](auto v) { return std::exp(v); }); }
Tensor log(const Tensor& x) { return unary(x, [](auto v) { return std::log(v); }); }
Tensor sqrt(const Tensor& x) { return unary(x, [](auto v) { return std::sqrt(v); }); }
Tensor sin(const Tensor& x) { return unary(x, [](auto v) { return std::sin(v); }); }
Tensor cos(const Tensor& x) { return unary(x, [](auto v) { return std::cos(v); }); }
Tensor tanh(const Tensor& x) { return unary(x, [](auto v) { return std::tanh(v); }); }
Tensor square(const Tensor& x) { return unary(x, [](auto v) { return v * v; }); }
Tensor sigmoid(const Tensor& x) {
    return unary(x, [](auto v) { return decltype(v)(1) / (decltype(v)(1) + std::exp(-v)); });
}
Tensor silu(const Tensor& x) {
    return unary(x, [](auto v) { return v / (decltype(v)(1) + std::exp(-v)); });
}

void add_(Tensor& acc, const Tensor& x) { axpy_(acc, 1.0, x); }

void axpy_(Tensor& acc, double alpha, const Tensor& x) {
    check_same_dtype(acc, x, "axpy_");
    check_same_shape(acc, x, "axpy_");
    dispatch(acc.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* y = acc.data<T>();
        const T* in = x.data<T>();
        T a = T(alpha);
        int64_t n = acc.numel();
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; i++) y[i] += a * in[i];
    });
}

// ---- reductions ---------------------------------------------------------------------------
std::vector<int> normalize_dims(std::vector<int> dims, int ndim, const char* op) {
    if (dims.empty()) {
        dims.resize(size_t(ndim));
        std::iota(dims.begin(), dims.end(), 0);
    }
    for (int& d : dims) {
        if (d < -ndim || d >= ndim) fail(op, ": dim ", d, " out of range for a ", ndim, "-dimensional tensor");
        if (d < 0) d += ndim;
    }
    std::sort(dims.begin(), dims.end());
    if (std::adjacent_find(dims.begin(), dims.end()) != dims.end()) fail(op, ": repeated dim");
    return dims;
}

// The output shape with reduced dims set to 1 (keepdim), and the output strides of every input
// dim (0 on reduced dims), so input element i adds into output offset sum(idx[d] * ostride[d]).
struct ReducePlan {
    Shape kept;
    std::vector<int64_t> ostride;
};

static ReducePlan plan_reduce(const Shape& in, const std::vector<int>& dims) {
    ReducePlan p;
    p.kept = in;
    for (int d : dims) p.kept[size_t(d)] = 1;
    p.ostride = broadcast_strides(p.kept, in);
    return p;
}

static Shape drop_dims(const Shape& kept, const std::vector<int>& dims) {
    Shape s;
    for (size_t i = 0; i < kept.size(); i++)
        if (!std::binary_search(dims.begin(), dims.end(), int(i))) s.push_back(kept[i]);
    return s;
}

// Calls f(input flat index, output flat index) for every input element in order.
template <class F>
static void for_each_reduced(const Shape& in, const std::vector<int64_t>& ostride, F f) {
    int64_t n = shape_numel(in);
    std::vector<int64_t> idx(in.size(), 0);
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        f(i, o);
        for (size_t d = in.size(); d-- > 0;) {  // odometer increment
            o += ostride[d];
            if (++idx[d] < in[d]) break;
            o -= ostride[d] * in[d];
            idx[d] = 0;
        }
    }
}

// The reduction as three coalesced extents (outer, middle, inner) when the pattern allows:
// reduced outer and inner blocks around a kept middle (the bias gradient (B, C, H, W) -> (C),
// row sums), or a reduced middle between kept blocks (column sums). False for other patterns.
static bool three_blocks(const Shape& in, const std::vector<int>& dims, int64_t ext[3], bool& middle_reduced) {
    std::vector<std::pair<bool, int64_t>> runs;  // (reduced?, extent), adjacent dims merged
    for (size_t i = 0; i < in.size(); i++) {
        bool r = std::binary_search(dims.begin(), dims.end(), int(i));
        if (in[i] == 1) continue;
        if (!runs.empty() && runs.back().first == r) runs.back().second *= in[i];
        else runs.push_back({r, in[i]});
    }
    if (runs.empty()) runs.push_back({true, 1});
    if (runs.size() > 3) return false;
    middle_reduced = false;
    if (runs.size() == 3) {  // [R, K, R] or [K, R, K]
        for (int i = 0; i < 3; i++) ext[i] = runs[size_t(i)].second;
        middle_reduced = runs[1].first;
    } else if (runs.size() == 2) {  // [R, K] as (R, K, 1), [K, R] as (1, K, R)
        bool r0 = runs[0].first;
        ext[0] = r0 ? runs[0].second : 1;
        ext[1] = r0 ? runs[1].second : runs[0].second;
        ext[2] = r0 ? 1 : runs[1].second;
    } else {  // [R] as (R, 1, 1), [K] as (1, K, 1)
        ext[0] = runs[0].first ? runs[0].second : 1;
        ext[1] = runs[0].first ? 1 : runs[0].second;
        ext[2] = 1;
    }
    return true;
}

Tensor sum(const Tensor& x, std::vector<int> dims, bool keepdim) {
    dims = normalize_dims(std::move(dims), x.ndim(), "sum");
    ReducePlan p = plan_reduce(x.shape(), dims);
    Tensor out(p.kept, x.dtype());
    int64_t e[3];
    bool middle_reduced;
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* in = x.data<T>();
        T* y = out.data<T>();
        if (three_blocks(x.shape(), dims, e, middle_reduced) && middle_reduced) {
            // y[a, c] = sum_m x[a, m, c]  (a, c kept)
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
            for (int64_t a = 0; a < e[0]; a++)
                for (int64_t c = 0; c < e[2]; c++) {
                    double acc = 0;
                    for (int64_t m = 0; m < e[1]; m++) acc += double(in[(a * e[1] + m) * e[2] + c]);
                    y[a * e[2] + c] = T(acc);
                }
        } else if (three_blocks(x.shape(), dims, e, middle_reduced)) {
            // y[m] = sum_{a, c} x[a, m, c]  (a, c reduced); contiguous runs of c vectorize
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
            for (int64_t m = 0; m < e[1]; m++) {
                double acc = 0;
                for (int64_t a = 0; a < e[0]; a++) {
                    const T* row = in + (a * e[1] + m) * e[2];
                    T part = 0;
                    for (int64_t c = 0; c < e[2]; c++) part += row[c];
                    acc += double(part);
                }
                y[m] = T(acc);
            }
        } else {
            std::vector<double> acc(size_t(out.numel()), 0.0);  // accumulate in double
            for_each_reduced(x.shape(), p.ostride, [&](int64_t i, int64_t o) { acc[size_t(o)] += double(in[i]); });
            for (int64_t o = 0; o < out.numel(); o++) y[o] = T(acc[size_t(o)]);
        }
    });
    return keepdim ? out : out.reshape(drop_dims(p.kept, dims));
}

Tensor mean(const Tensor& x, std::vector<int> dims, bool keepdim) {
    dims = normalize_dims(std::move(dims), x.ndim(), "mean");
    int64_t count = 1;
    for (int d : dims) count *= x.shape()[size_t(d)];
    if (count == 0) fail("mean: reducing over an empty dimension of ", shape_str(x.shape()));
    Tensor s = sum(x, dims, keepdim);
    return mul_scalar(s, 1.0 / double(count));
}

Tensor max(const Tensor& x, std::vector<int> dims, bool keepdim, std::vector<int64_t>* argmax) {
    dims = normalize_dims(std::move(dims), x.ndim(), "max");
    if (x.numel() == 0) fail("max: empty tensor ", shape_str(x.shape()));
    ReducePlan p = plan_reduce(x.shape(), dims);
    Tensor out(p.kept, x.dtype());
    std::vector<int64_t> arg(size_t(out.numel()), -1);
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* in = x.data<T>();
        T* y = out.data<T>();
        for_each_reduced(x.shape(), p.ostride, [&](int64_t i, int64_t o) {
            if (arg[size_t(o)] < 0 || in[i] > y[o]) { y[o] = in[i]; arg[size_t(o)] = i; }
        });
    });
    if (argmax) *argmax = std::move(arg);
    return keepdim ? out : out.reshape(drop_dims(p.kept, dims));
}

Tensor expand(const Tensor& x, const Shape& shape) {
    if (broadcast_shapes(x.shape(), shape, "expand") != shape) fail("expand: ", shape_str(x.shape()), " does not broadcast to ", shape_str(shape));
    Tensor out(shape, x.dtype());
    BroadcastPlan plan = plan_broadcast(x.shape(), x.shape(), shape);
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        broadcast_apply<T>(x.data<T>(), x.data<T>(), out.data<T>(), plan, [](T a, T) { return a; });
    });
    return out;
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
    if (x.shape() == shape) return x;
    Shape full = broadcast_shapes(shape, x.shape(), "sum_to_shape");
    if (full != x.shape()) fail("sum_to_shape: ", shape_str(x.shape()), " does not broadcast from ", shape_str(shape));
    std::vector<int> dims;
    size_t lead = x.shape().size() - shape.size();
    for (size_t i = 0; i < x.shape().size(); i++)
        if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(int(i));
    if (dims.empty()) return x.reshape(shape);
    return sum(x, dims, true).reshape(shape);
}

// ---- linear algebra -----------------------------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
    check_same_dtype(a, b, "matmul");
    if (a.ndim() != 2 || b.ndim() != 2) fail("matmul: expected 2-d operands, got ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    int64_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1);
    int64_t Kb = tb ? b.dim(1) : b.dim(0), N = tb ? b.dim(0) : b.dim(1);
    if (K != Kb) fail("matmul: inner dimensions differ: ", shape_str(a.shape()), (ta ? "^T" : ""), " x ", shape_str(b.shape()), (tb ? "^T" : ""));
    Tensor out({M, N}, a.dtype());
    dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        gemm<T>(ta, tb, M, N, K, T(1), a.data<T>(), a.dim(1), b.data<T>(), b.dim(1), T(0), out.data<T>(), N);
    });
    return out;
}

Tensor bmm(const Tensor& a, const Tensor& b, bool ta, bool tb) {
    check_same_dtype(a, b, "bmm");
    if (a.ndim() != 3 || b.ndim() != 3 || a.dim(0) != b.dim(0))
        fail("bmm: expected (Bt,M,K) and (Bt,K,N), got ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    int64_t Bt = a.dim(0);
    int64_t M = ta ? a.dim(2) : a.dim(1), K = ta ? a.dim(1) : a.dim(2);
    int64_t Kb = tb ? b.dim(2) : b.dim(1), N = tb ? b.dim(1) : b.dim(2);
    if (K != Kb) fail("bmm: inner dimensions differ: ", shape_str(a.shape()), (ta ? "^T" : ""), " x ", shape_str(b.shape()), (tb ? "^T" : ""));
    Tensor out({Bt, M, N}, a.dtype());
    dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T *pa = a.data<T>(), *pb = b.data<T>();
        T* pc = out.data<T>();
        // One GEMM per batch entry; the batch is the parallel loop, each GEMM runs on one thread.
#pragma omp parallel for schedule(static) if (Bt > 1 && Bt * M * N * K > kParallelMin)
        for (int64_t i = 0; i < Bt; i++)
            gemm<T>(ta, tb, M, N, K, T(1), pa + i * M * K, a.dim(2), pb + i * K * N, b.dim(2), T(0), pc + i * M * N, N);
    });
    return out;
}

// ---- layout -------------------------------------------------------------------------------
// A tensor seen as (outer, dim, inner) around one dim, for concat and slice.
static void split_at(const Shape& s, int dim, int64_t& outer, int64_t& inner) {
    outer = inner = 1;
    for (int i = 0; i < dim; i++) outer *= s[size_t(i)];
    for (size_t i = size_t(dim) + 1; i < s.size(); i++) inner *= s[i];
}

Tensor concat(const std::vector<Tensor>& xs, int dim) {
    if (xs.empty()) fail("concat: no tensors");
    int nd = xs[0].ndim();
    if (dim < -nd || dim >= nd) fail("concat: dim ", dim, " out of range for ", shape_str(xs[0].shape()));
    if (dim < 0) dim += nd;
    Shape shape = xs[0].shape();
    shape[size_t(dim)] = 0;
    for (const Tensor& x : xs) {
        check_same_dtype(xs[0], x, "concat");
        bool ok = x.ndim() == nd;
        for (int i = 0; ok && i < nd; i++) ok = i == dim || x.shape()[size_t(i)] == xs[0].shape()[size_t(i)];
        if (!ok) fail("concat: shapes ", shape_str(xs[0].shape()), " and ", shape_str(x.shape()), " differ outside dim ", dim);
        shape[size_t(dim)] += x.shape()[size_t(dim)];
    }
    Tensor out(shape, xs[0].dtype());
    int64_t outer, inner;
    split_at(shape, dim, outer, inner);
    size_t esz = dtype_size(out.dtype());
    size_t out_row = size_t(shape[size_t(dim)] * inner) * esz;
    size_t at = 0;
    for (const Tensor& x : xs) {
        size_t row = size_t(x.shape()[size_t(dim)] * inner) * esz;
        const char* src = static_cast<const char*>(x.raw());
        char* dst = static_cast<char*>(out.raw()) + at;
#pragma omp parallel for schedule(static) if (outer > 1 && x.numel() > kParallelMin)
        for (int64_t o = 0; o < outer; o++) std::memcpy(dst + size_t(o) * out_row, src + size_t(o) * row, row);
        at += row;
    }
    return out;
}

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end) {
    int nd = x.ndim();
    if (dim < -nd || dim >= nd) fail("slice: dim ", dim, " out of range for ", shape_str(x.shape()));
    if (dim < 0) dim += nd;
    int64_t len = x.shape()[size_t(dim)];
    if (start < 0 || end > len || start > end) fail("slice: [", start, ", ", end, ") out of range for dim ", dim, " of ", shape_str(x.shape()));
    Shape shape = x.shape();
    shape[size_t(dim)] = end - start;
    Tensor out(shape, x.dtype());
    int64_t outer, inner;
    split_at(x.shape(), dim, outer, inner);
    size_t esz = dtype_size(x.dtype());
    size_t in_row = size_t(len * inner) * esz, out_row = size_t((end - start) * inner) * esz;
    const char* src = static_cast<const char*>(x.raw()) + size_t(start * inner) * esz;
    char* dst = static_cast<char*>(out.raw());
#pragma omp parallel for schedule(static) if (outer > 1 && out.numel() > kParallelMin)
    for (int64_t o = 0; o < outer; o++) std::memcpy(dst + size_t(o) * out_row, src + size_t(o) * in_row, out_row);
    return out;
}

void slice_backward_(Tensor& dst, const Tensor& src, int dim, int64_t start) {
    check_same_dtype(dst, src, "slice_backward_");
    int nd = dst.ndim();
    if (dim < 0) dim += nd;
    int64_t len = dst.shape()[size_t(dim)], n = src.shape()[size_t(dim)];
    int64_t outer, inner;
    split_at(dst.shape(), dim, outer, inner);
    dispatch(dst.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* d = dst.data<T>() + start * inner;
        const T* s = src.data<T>();
#pragma omp parallel for schedule(static) if (outer > 1 && src.numel() > kParallelMin)
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < n * inner; j++) d[o * len * inner + j] += s[o * n * inner + j];
    });
}

Tensor permute(const Tensor& x, const std::vector<int>& dims) {
    int nd = x.ndim();
    std::vector<int> seen(static_cast<size_t>(nd), 0);
    bool ok = int(dims.size()) == nd;
    for (int d : dims) ok = ok && d >= 0 && d < nd && !seen[size_t(d)]++;
    if (!ok) fail("permute: ", dims.size(), " dims is not a permutation of the ", nd, " dims of ", shape_str(x.shape()));
    Shape shape(static_cast<size_t>(nd));
    std::vector<int64_t> in_stride(static_cast<size_t>(nd)), stride(static_cast<size_t>(nd));  // input strides, reordered
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) { in_stride[size_t(i)] = s; s *= x.shape()[size_t(i)]; }
    for (int i = 0; i < nd; i++) { shape[size_t(i)] = x.shape()[size_t(dims[size_t(i)])]; stride[size_t(i)] = in_stride[size_t(dims[size_t(i)])]; }
    Tensor out(shape, x.dtype());
    dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* in = x.data<T>();
        T* y = out.data<T>();
        // walk the output in order; ostride 'stride' gives where each output element comes from
        for_each_reduced(shape, stride, [&](int64_t o, int64_t i) { y[o] = in[i]; });
    });
    return out;
}

Tensor gather(const Tensor& src, const std::vector<int64_t>& index) {
    if (src.ndim() < 1) fail("gather: source must have at least 1 dim, got ", shape_str(src.shape()));
    Shape shape = src.shape();
    int64_t rows = shape[0], row = src.numel() / std::max<int64_t>(rows, 1);
    shape[0] = int64_t(index.size());
    Tensor out(shape, src.dtype());
    size_t bytes = size_t(row) * dtype_size(src.dtype());
    for (size_t i = 0; i < index.size(); i++) {
        if (index[i] < 0 || index[i] >= rows) fail("gather: index ", index[i], " out of range for ", rows, " rows");
        std::memcpy(static_cast<char*>(out.raw()) + i * bytes, static_cast<const char*>(src.raw()) + size_t(index[i]) * bytes, bytes);
    }
    return out;
}

void scatter_add_(Tensor& dst, const std::vector<int64_t>& index, const Tensor& src) {
    check_same_dtype(dst, src, "scatter_add_");
    int64_t rows = dst.dim(0), row = dst.numel() / std::max<int64_t>(rows, 1);
    if (src.dim(0) != int64_t(index.size()) || src.numel() != int64_t(index.size()) * row)
        fail("scatter_add_: source ", shape_str(src.shape()), " does not match ", index.size(), " rows of ", shape_str(dst.shape()));
    dispatch(dst.dtype(), [&](auto tag) {
        using T = decltype(tag);
        for (size_t i = 0; i < index.size(); i++) {
            if (index[i] < 0 || index[i] >= rows) fail("scatter_add_: index ", index[i], " out of range for ", rows, " rows");
            T* d = dst.data<T>() + index[i] * row;
            const T* s = src.data<T>() + int64_t(i) * row;
            for (int64_t j = 0; j < row; j++) d[j] += s[j];
        }
    });
}

bool all_finite(const Tensor& x, int64_t* first_bad) {
    return dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* p = x.data<T>();
        for (int64_t i = 0; i < x.numel(); i++)
            if (!std::isfinite(p[i])) {
                if (first_bad) *first_bad = i;
                return false;
            }
        return true;
    });
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    check_same_shape(a, b, "max_abs_diff");
    double m = 0;
    for (int64_t i = 0; i < a.numel(); i++) m = std::max(m, std::abs(a.flat(i) - b.flat(i)));
    return m;
}

}  // namespace dl
