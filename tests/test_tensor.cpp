// Tensor basics: factories, views, dtype conversion, the caching allocator, Philox.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "tensor/rng.h"
#include "tensor/tensor.h"

using namespace dl;

TEST_CASE("factories fill shapes and values") {
    Tensor z = Tensor::zeros({2, 3});
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.numel() == 6);
    CHECK(z.dtype() == DType::F32);
    CHECK(z.at({1, 2}) == 0.0);
    CHECK(Tensor::ones({4}, DType::F64).flat(3) == 1.0);
    CHECK(Tensor::full({2}, 2.5).flat(1) == 2.5);
    Tensor a = Tensor::arange(0, 5);
    CHECK(a.to_vector() == std::vector<double>{0, 1, 2, 3, 4});
    Tensor l = Tensor::linspace(1e-4, 0.02, 1000, DType::F64);
    CHECK(l.flat(0) == doctest::Approx(1e-4));
    CHECK(l.flat(999) == doctest::Approx(0.02));
    Tensor v = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
    CHECK(v.at({1, 0}) == 4.0);
    CHECK_THROWS_WITH(Tensor::from_vector(std::vector<float>{1, 2}, {3}),
                      "Tensor::from_vector: shape (3) holds 3 values, got 2");
}

TEST_CASE("reshape is a view, clone is a copy") {
    Tensor x = Tensor::arange(0, 12).reshape({3, 4});
    Tensor y = x.reshape({2, -1});
    CHECK(y.shape() == Shape{2, 6});
    CHECK(y.shares_storage(x));
    y.set_flat(0, 42);
    CHECK(x.at({0, 0}) == 42.0);
    Tensor c = x.clone();
    c.set_flat(0, 7);
    CHECK(x.at({0, 0}) == 42.0);
    CHECK_THROWS_WITH(x.reshape({5, -1}), "reshape: cannot view (3, 4) as (5, -1)");
    Tensor r = x.rows(1, 2);
    CHECK(r.shape() == Shape{2, 4});
    CHECK(r.at({0, 0}) == 4.0);
}

TEST_CASE("dtype conversion and typed access") {
    Tensor x = Tensor::from_vector(std::vector<float>{0.5f, -1.25f}, {2});
    Tensor d = x.to(DType::F64);
    CHECK(d.dtype() == DType::F64);
    CHECK(d.data<double>()[1] == -1.25);
    CHECK_THROWS_WITH(x.data<double>(), "Tensor::data: tensor is float32, asked for float64");
}

TEST_CASE("storage is 64-byte aligned and reused after free") {
    void* first;
    {
        Tensor t({1000});
        first = t.raw();
        CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
    }
    Tensor again({1000});
    CHECK(again.raw() == first);  // the cache handed the same block back
    CHECK(allocator_stats().in_use >= 4000);
}

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
    // kat_vectors from Random123: philox4x32 10 rounds.
    auto zero = philox4x32_10({0, 0, 0, 0}, {0, 0});
    CHECK(zero == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    auto ones = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
    CHECK(ones == std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    auto pi = philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
    CHECK(pi == std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("random numbers: seeded, thread-count independent, resumable, right moments") {
    Philox g(123);
    Tensor a = randn({10001}, g);
    CHECK(g.offset == 2501);
    Philox h(123);
    Tensor b1 = randn({5000}, h);  // the same stream drawn in two pieces of whole blocks
    Tensor b2 = randn({5001}, h);
    for (int64_t i = 0; i < 5000; i++) REQUIRE(a.flat(i) == b1.flat(i));
    for (int64_t i = 0; i < 5001; i++) REQUIRE(a.flat(5000 + i) == b2.flat(i));

    Philox big(7);
    Tensor n = randn({400000}, big, DType::F64);  // parallel fill
    double mean = 0, var = 0;
    for (double v : n.to_vector()) mean += v;
    mean /= double(n.numel());
    for (double v : n.to_vector()) var += (v - mean) * (v - mean);
    var /= double(n.numel());
    CHECK(std::abs(mean) < 0.01);
    CHECK(std::abs(var - 1) < 0.01);
    Philox big1(7);
    Tensor n1 = randn({400000}, big1, DType::F64);
    CHECK(n1.to_vector() == n.to_vector());

    Philox u(9);
    Tensor un = rand({100000}, u);
    double lo = 1, hi = 0, sum = 0;
    for (double v : un.to_vector()) { lo = std::min(lo, v); hi = std::max(hi, v); sum += v; }
    CHECK(lo > 0);
    CHECK(hi < 1);
    CHECK(sum / 100000 == doctest::Approx(0.5).epsilon(0.01));

    Philox ri(3);
    auto ts = randint(1000, 10, ri);
    std::vector<int> counts(10, 0);
    for (auto t : ts) { REQUIRE(t >= 0); REQUIRE(t < 10); counts[size_t(t)]++; }
    for (int c : counts) CHECK(c > 50);
    auto p = randperm(100, ri);
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 100; i++) CHECK(sorted[size_t(i)] == i);
    CHECK(p != sorted);
}

TEST_CASE("constant vectors survive the compiler (GCC 12.2 AVX-512 SLP miscompile)") {
    // Built with -march=native on an AVX-512 machine and without -fno-tree-slp-vectorize, GCC
    // 12.2 stored {1, 1, 0, 0} as {1, 1, 1, 1}. The Makefile turns that pass off.
    Tensor a = Tensor::from_vector(std::vector<double>{1, 1, 0, 0}, {2, 2});
    CHECK(a.flat(2) == 0.0);
    CHECK(a.flat(3) == 0.0);
}

TEST_CASE("a shape whose element count wraps 64 bits, or passes 2^60, is refused before anything is allocated") {
    const int64_t big = int64_t(1) << 32;
    // 2^32 x 2^32 is 2^64, which wraps to 0: without the check, an empty buffer for a huge shape
    CHECK_THROWS_WITH(Tensor({big, big}), "shape (4294967296, 4294967296): more than 2^60 elements");
    CHECK_THROWS_WITH(Tensor({big + 8, 1 << 29}), doctest::Contains("more than 2^60 elements"));
    CHECK_THROWS_WITH(Tensor({3, -1}), "shape (3, -1): negative dimension");
    CHECK(Tensor({0, big, big}).numel() == 0);  // a zero dimension first: nothing to allocate, and no product wraps
    CHECK(shape_numel({1 << 20, 1 << 20}) == int64_t(1) << 40);
}
