#include "tensor/rng.h"

#include <cmath>

namespace dl {

// Round function and constants from Salmon et al. 2011 (Random123's philox4x32 with 10 rounds).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;  // multipliers
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt(3)-1)
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k[0] += W0; k[1] += W1; }
        uint64_t p0 = uint64_t(M0) * c[0], p1 = uint64_t(M1) * c[2];
        uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    }
    return c;
}

std::array<uint32_t, 4> Philox::block(uint64_t index) const {
    return philox4x32_10({uint32_t(index), uint32_t(index >> 32), 0, 0}, {uint32_t(seed), uint32_t(seed >> 32)});
}

// A 32-bit integer to a double strictly inside (0, 1), so log() in Box-Muller never sees 0.
static inline double to_unit(uint32_t u) { return (double(u) + 0.5) * (1.0 / 4294967296.0); }

template <class T> void Philox::uniform(T* out, int64_t n) {
    int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t b = 0; b < blocks; b++) {
        auto r = block(offset + uint64_t(b));
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++) out[4 * b + l] = T(to_unit(r[size_t(l)]));
    }
    offset += uint64_t(blocks);
}

template <class T> void Philox::normal(T* out, int64_t n) {
    int64_t blocks = (n + 3) / 4;
    const double two_pi = 6.283185307179586;
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t b = 0; b < blocks; b++) {
        auto r = block(offset + uint64_t(b));
        double z[4];
        for (int pair = 0; pair < 2; pair++) {  // Box-Muller: two uniforms -> two normals
            double radius = std::sqrt(-2.0 * std::log(to_unit(r[2 * pair])));
            double angle = two_pi * to_unit(r[2 * pair + 1]);
            z[2 * pair] = radius * std::cos(angle);
            z[2 * pair + 1] = radius * std::sin(angle);
        }
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++) out[4 * b + l] = T(z[l]);
    }
    offset += uint64_t(blocks);
}

void Philox::randint(int64_t* out, int64_t n, int64_t high) {
    if (high < 1 || high > (int64_t(1) << 32)) fail("randint: high must be in [1, 2^32], got ", high);
    int64_t blocks = (n + 3) / 4;
    for (int64_t b = 0; b < blocks; b++) {
        auto r = block(offset + uint64_t(b));
        // Lemire's multiply-shift maps a 32-bit number to [0, high) with bias below high / 2^32.
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++) out[4 * b + l] = int64_t((uint64_t(r[size_t(l)]) * uint64_t(high)) >> 32);
    }
    offset += uint64_t(blocks);
}

template void Philox::uniform<float>(float*, int64_t);
template void Philox::uniform<double>(double*, int64_t);
template void Philox::normal<float>(float*, int64_t);
template void Philox::normal<double>(double*, int64_t);

Tensor rand(Shape shape, Philox& gen, DType dtype) {
    Tensor t(std::move(shape), dtype);
    dispatch(dtype, [&](auto tag) { gen.uniform(t.data<decltype(tag)>(), t.numel()); });
    return t;
}

Tensor randn(Shape shape, Philox& gen, DType dtype) {
    Tensor t(std::move(shape), dtype);
    dispatch(dtype, [&](auto tag) { gen.normal(t.data<decltype(tag)>(), t.numel()); });
    return t;
}

std::vector<int64_t> randint(int64_t n, int64_t high, Philox& gen) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    gen.randint(v.data(), n, high);
    return v;
}

std::vector<int64_t> randperm(int64_t n, Philox& gen) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) p[size_t(i)] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j;
        gen.randint(&j, 1, i + 1);
        std::swap(p[size_t(i)], p[size_t(j)]);
    }
    return p;
}

}  // namespace dl
