#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace dl {

std::string shape_str(const Shape& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + ")";
}

// A product of dimensions that wraps would allocate a small buffer for a huge shape; every shape
// passes here before its storage is sized, so the check is made once, for every caller. The limit
// (2^60 elements) also keeps the byte count (8 a float64) within int64.
int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) {
        if (d < 0) fail("shape ", shape_str(s), ": negative dimension");
        if (__builtin_mul_overflow(n, d, &n) || n > (int64_t(1) << 60))
            fail("shape ", shape_str(s), ": more than 2^60 elements");
    }
    return n;
}

size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 8; }
const char* dtype_name(DType d) { return d == DType::F32 ? "float32" : "float64"; }

// ---- the caching allocator ----------------------------------------------------------------
namespace {
struct Pool {
    std::mutex mu;
    std::unordered_map<size_t, std::vector<void*>> free_blocks;  // rounded size -> blocks
    AllocatorStats stats;
};
Pool& pool() {
    static Pool* p = new Pool;  // never destroyed: storages may die during static destruction
    return *p;
}
size_t round_up(size_t bytes) { return std::max<size_t>(64, (bytes + 63) / 64 * 64); }
}  // namespace

Storage::Storage(size_t n) : bytes(round_up(n)) {
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mu);
        auto it = p.free_blocks.find(bytes);
        if (it != p.free_blocks.end() && !it->second.empty()) {
            ptr = it->second.back();
            it->second.pop_back();
            p.stats.cached -= bytes;
        }
        p.stats.in_use += bytes;
        p.stats.peak_in_use = std::max(p.stats.peak_in_use, p.stats.in_use);
    }
    if (!ptr) ptr = std::aligned_alloc(64, bytes);
    if (!ptr) fail("Storage: out of memory allocating ", bytes, " bytes");
}

Storage::~Storage() {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    p.free_blocks[bytes].push_back(ptr);
    p.stats.in_use -= bytes;
    p.stats.cached += bytes;
}

AllocatorStats allocator_stats() {
    std::lock_guard<std::mutex> lock(pool().mu);
    return pool().stats;
}
void allocator_reset_peak() {
    std::lock_guard<std::mutex> lock(pool().mu);
    pool().stats.peak_in_use = pool().stats.in_use;
}
void allocator_release_cache() {
    std::lock_guard<std::mutex> lock(pool().mu);
    for (auto& [size, blocks] : pool().free_blocks)
        for (void* b : blocks) std::free(b);
    pool().free_blocks.clear();
    pool().stats.cached = 0;
}

// ---- Tensor -------------------------------------------------------------------------------
Tensor::Tensor(Shape shape, DType dtype)
    : shape_(std::move(shape)), numel_(shape_numel(shape_)), dtype_(dtype) {
    storage_ = std::make_shared<Storage>(nbytes());
}

Tensor Tensor::zeros(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype).zero_(); }
Tensor Tensor::ones(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype).fill_(1); }
Tensor Tensor::full(Shape shape, double v, DType dtype) { return Tensor(std::move(shape), dtype).fill_(v); }
Tensor Tensor::scalar(double v, DType dtype) { return Tensor(Shape{}, dtype).fill_(v); }

Tensor Tensor::arange(double start, double stop, double step, DType dtype) {
    if (step == 0 || (stop - start) / step < 0) fail("arange: empty or infinite range [", start, ", ", stop, ") step ", step);
    int64_t n = int64_t(std::ceil((stop - start) / step));
    Tensor t({n}, dtype);
    for (int64_t i = 0; i < n; i++) t.set_flat(i, start + double(i) * step);
    return t;
}

Tensor Tensor::linspace(double start, double stop, int64_t n, DType dtype) {
    if (n < 1) fail("linspace: n must be at least 1, got ", n);
    Tensor t({n}, dtype);
    for (int64_t i = 0; i < n; i++) t.set_flat(i, n == 1 ? start : start + (stop - start) * double(i) / double(n - 1));
    return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, Shape shape) {
    Tensor t(std::move(shape), DType::F32);
    if (size_t(t.numel()) != v.size()) fail("Tensor::from_vector: shape ", shape_str(t.shape()), " holds ", t.numel(), " values, got ", v.size());
    std::memcpy(t.raw(), v.data(), t.nbytes());
    return t;
}

Tensor Tensor::from_vector(const std::vector<double>& v, Shape shape) {
    Tensor t(std::move(shape), DType::F64);
    if (size_t(t.numel()) != v.size()) fail("Tensor::from_vector: shape ", shape_str(t.shape()), " holds ", t.numel(), " values, got ", v.size());
    std::memcpy(t.raw(), v.data(), t.nbytes());
    return t;
}

int64_t Tensor::dim(int i) const {
    int n = ndim();
    if (i < -n || i >= n) fail("Tensor::dim: dim ", i, " out of range for shape ", shape_str(shape_));
    return shape_[i < 0 ? i + n : i];
}

Tensor Tensor::reshape(Shape shape) const {
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); i++) {
        if (shape[i] == -1) {
            if (infer >= 0) fail("reshape: more than one -1 in ", shape_str(shape));
            infer = int64_t(i);
        } else {
            if (shape[i] < 0) fail("reshape: negative dimension in ", shape_str(shape));
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel_ % known) fail("reshape: cannot view ", shape_str(shape_), " as ", shape_str(shape));
        shape[size_t(infer)] = numel_ / known;
    }
    if (shape_numel(shape) != numel_) fail("reshape: cannot view ", shape_str(shape_), " (", numel_, " elements) as ", shape_str(shape));
    Tensor v = *this;
    v.shape_ = std::move(shape);
    return v;
}

Tensor Tensor::rows(int64_t start, int64_t count) const {
    if (ndim() < 1 || start < 0 || count < 0 || start + count > shape_[0])
        fail("Tensor::rows: rows [", start, ", ", start + count, ") out of range for shape ", shape_str(shape_));
    Tensor v = *this;
    v.shape_[0] = count;
    v.numel_ = shape_numel(v.shape_);
    v.offset_ += size_t(start) * size_t(numel_ / std::max<int64_t>(shape_[0], 1)) * dtype_size(dtype_);
    return v;
}

Tensor Tensor::clone() const {
    Tensor c(shape_, dtype_);
    std::memcpy(c.raw(), raw(), nbytes());
    return c;
}

Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return clone();
    Tensor c(shape_, dtype);
    if (dtype == DType::F64) {
        const float* s = data<float>();
        double* d = c.data<double>();
        for (int64_t i = 0; i < numel_; i++) d[i] = s[i];
    } else {
        const double* s = data<double>();
        float* d = c.data<float>();
        for (int64_t i = 0; i < numel_; i++) d[i] = float(s[i]);
    }
    return c;
}

void Tensor::copy_from(const Tensor& src) {
    if (src.shape_ != shape_ || src.dtype_ != dtype_)
        fail("Tensor::copy_from: destination is ", dtype_name(dtype_), " ", shape_str(shape_), ", source is ", dtype_name(src.dtype_), " ", shape_str(src.shape_));
    std::memmove(raw(), src.raw(), nbytes());
}

double Tensor::flat(int64_t i) const {
    if (i < 0 || i >= numel_) fail("Tensor::flat: index ", i, " out of range for ", numel_, " elements");
    return dtype_ == DType::F32 ? double(data<float>()[i]) : data<double>()[i];
}

void Tensor::set_flat(int64_t i, double v) {
    if (i < 0 || i >= numel_) fail("Tensor::set_flat: index ", i, " out of range for ", numel_, " elements");
    if (dtype_ == DType::F32) data<float>()[i] = float(v);
    else data<double>()[i] = v;
}

double Tensor::item() const {
    if (numel_ != 1) fail("Tensor::item: expected one element, shape is ", shape_str(shape_));
    return flat(0);
}

double Tensor::at(std::initializer_list<int64_t> index) const {
    if (int(index.size()) != ndim()) fail("Tensor::at: ", index.size(), " indices for shape ", shape_str(shape_));
    int64_t off = 0, d = 0;
    for (int64_t i : index) {
        if (i < 0 || i >= shape_[size_t(d)]) fail("Tensor::at: index ", i, " out of range in dim ", d, " of shape ", shape_str(shape_));
        off = off * shape_[size_t(d++)] + i;
    }
    return flat(off);
}

std::vector<double> Tensor::to_vector() const {
    std::vector<double> v(static_cast<size_t>(numel_));
    for (int64_t i = 0; i < numel_; i++) v[size_t(i)] = flat(i);
    return v;
}

Tensor& Tensor::fill_(double value) {
    dispatch(dtype_, [&](auto tag) {
        using T = decltype(tag);
        std::fill_n(data<T>(), numel_, T(value));
    });
    return *this;
}

Tensor& Tensor::zero_() {
    std::memset(raw(), 0, nbytes());
    return *this;
}

std::string Tensor::str(int max_values) const {
    if (!defined()) return "Tensor(undefined)";
    std::ostringstream os;
    os << "Tensor(" << dtype_name(dtype_) << ", " << shape_str(shape_) << ") [";
    int64_t n = std::min<int64_t>(numel_, max_values);
    for (int64_t i = 0; i < n; i++) os << (i ? ", " : "") << flat(i);
    if (n < numel_) os << ", ...";
    os << "]";
    return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace dl
