// Tensor: a shape, a dtype, and a shared block of contiguous, 64-byte-aligned storage.
//
// Copying a Tensor is shallow: both copies see the same storage. `clone()` copies the data.
// Every tensor is contiguous in row-major (NCHW for images) order; `reshape` is a view that
// shares storage, everything else that changes layout (permute, slice, concat) copies.
// Two dtypes: float32, the fast path, and float64, which the gradient checks need and which
// the generic kernels serve (they double as the reference implementation for the float32 ones).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dl {

// ---- errors -------------------------------------------------------------------------------
// Every invalid shape, file or argument throws dl::Error with a message that names the op or
// file, what was expected and what was found. Programs catch it in main() and exit non-zero.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// cat("conv2d: expected ", 4, " dims") -> one string, for error messages.
template <class... Args>
std::string cat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
    throw Error(cat(args...));
}

// ---- shapes and dtypes --------------------------------------------------------------------
using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 3, 28, 28)"
int64_t shape_numel(const Shape& s);

enum class DType : uint8_t { F32, F64 };
size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "float32", "float64"
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }

// ---- storage ------------------------------------------------------------------------------
// A block of 64-byte-aligned bytes. Freed blocks go to a size-keyed cache and are handed out
// again: a training step allocates the same buffers every time, so after the first step it
// runs without touching the system allocator (no page faults on the hot path).
struct Storage {
    explicit Storage(size_t bytes);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    void* ptr = nullptr;
    size_t bytes = 0;
};

struct AllocatorStats {
    size_t in_use = 0;       // bytes held by live storages
    size_t peak_in_use = 0;  // high-water mark of in_use since the last reset
    size_t cached = 0;       // bytes kept in the cache for reuse
};
AllocatorStats allocator_stats();
void allocator_reset_peak();
void allocator_release_cache();  // hand cached blocks back to the system

// ---- the tensor ---------------------------------------------------------------------------
class Tensor {
public:
    Tensor() = default;  // undefined: no storage (defined() == false)
    explicit Tensor(Shape shape, DType dtype = DType::F32);  // uninitialized values

    // factories
    static Tensor empty(Shape shape, DType dtype = DType::F32) { return Tensor(std::move(shape), dtype); }
    static Tensor zeros(Shape shape, DType dtype = DType::F32);
    static Tensor ones(Shape shape, DType dtype = DType::F32);
    static Tensor full(Shape shape, double value, DType dtype = DType::F32);
    static Tensor arange(double start, double stop, double step = 1, DType dtype = DType::F32);
    static Tensor linspace(double start, double stop, int64_t n, DType dtype = DType::F32);
    static Tensor from_vector(const std::vector<float>& v, Shape shape);   // float32
    static Tensor from_vector(const std::vector<double>& v, Shape shape);  // float64
    static Tensor scalar(double value, DType dtype = DType::F32);           // shape ()

    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    int ndim() const { return int(shape_.size()); }
    int64_t dim(int i) const;  // negative i counts from the end
    int64_t numel() const { return numel_; }
    DType dtype() const { return dtype_; }
    size_t nbytes() const { return size_t(numel_) * dtype_size(dtype_); }

    // typed access: data<float>() on a float64 tensor throws
    template <class T> T* data();
    template <class T> const T* data() const;
    void* raw() { return static_cast<char*>(storage_->ptr) + offset_; }
    const void* raw() const { return static_cast<const char*>(storage_->ptr) + offset_; }

    // views and copies
    Tensor reshape(Shape shape) const;  // a view; one dim may be -1
    Tensor flatten() const { return reshape({numel_}); }
    Tensor rows(int64_t start, int64_t count) const;  // view of [start, start+count) along dim 0
    Tensor clone() const;
    Tensor to(DType dtype) const;  // converted copy (a clone when the dtype is the same)
    void copy_from(const Tensor& src);  // same shape and dtype, data copied in
    bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }
    long storage_use_count() const { return storage_.use_count(); }

    // element access for tests and printing (slow; not for kernels)
    double item() const;  // numel must be 1
    double at(std::initializer_list<int64_t> index) const;
    double flat(int64_t i) const;
    void set_flat(int64_t i, double v);
    std::vector<double> to_vector() const;

    Tensor& fill_(double value);
    Tensor& zero_();

    std::string str(int max_values = 8) const;  // "Tensor(float32, (2, 3)) [0.1, ...]"

private:
    std::shared_ptr<Storage> storage_;
    size_t offset_ = 0;  // bytes from storage_->ptr
    Shape shape_;
    int64_t numel_ = 0;
    DType dtype_ = DType::F32;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

template <class T> T* Tensor::data() {
    if (dtype_ != dtype_of<T>()) fail("Tensor::data: tensor is ", dtype_name(dtype_), ", asked for ", dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw());
}
template <class T> const T* Tensor::data() const {
    if (dtype_ != dtype_of<T>()) fail("Tensor::data: tensor is ", dtype_name(dtype_), ", asked for ", dtype_name(dtype_of<T>()));
    return static_cast<const T*>(raw());
}

// Calls f with a value of the tensor's scalar type: dispatch(t.dtype(), [&](auto tag) {
// using T = decltype(tag); ... }). The generic kernels are written once as templates.
template <class F> decltype(auto) dispatch(DType d, F&& f) {
    if (d == DType::F32) return f(float{});
    return f(double{});
}

}  // namespace dl
