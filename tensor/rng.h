// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011). The n-th block of four 32-bit numbers is a pure function of (seed, n),
// so a fill is the same for any thread count, and the whole state is two integers: save them
// in a checkpoint and a resumed run continues bit for bit.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

// One Philox4x32-10 block: four 32-bit numbers for (key = seed, counter).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

struct Philox {
    uint64_t seed = 0;
    uint64_t offset = 0;  // index of the next unused block; each draw moves it past what it used

    explicit Philox(uint64_t seed_ = 0, uint64_t offset_ = 0) : seed(seed_), offset(offset_) {}

    std::array<uint32_t, 4> block(uint64_t index) const;  // does not advance

    // Fills out[0..n) and advances by ceil(n / 4) blocks. Element i comes from block
    // offset + i/4, lane i%4, whatever the thread count.
    template <class T> void uniform(T* out, int64_t n);                  // in (0, 1)
    template <class T> void normal(T* out, int64_t n);                   // N(0, 1), Box-Muller
    void randint(int64_t* out, int64_t n, int64_t high);                 // in [0, high)
};

Tensor rand(Shape shape, Philox& gen, DType dtype = DType::F32);   // U(0, 1)
Tensor randn(Shape shape, Philox& gen, DType dtype = DType::F32);  // N(0, 1)
std::vector<int64_t> randint(int64_t n, int64_t high, Philox& gen);
// A permutation of 0..n-1 (Fisher-Yates driven by the generator).
std::vector<int64_t> randperm(int64_t n, Philox& gen);

}  // namespace dl
