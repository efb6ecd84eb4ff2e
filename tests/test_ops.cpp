// Tensor ops without gradients: forward values against hand-computed results.
#include <doctest/doctest.h>

#include <cmath>

#include "tensor/ops.h"

using namespace dl;

static Tensor vec(std::vector<double> v, Shape s) { return Tensor::from_vector(v, std::move(s)); }

TEST_CASE("broadcasting binary ops") {
    Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor row = vec({10, 20, 30}, {3});
    Tensor col = vec({100, 200}, {2, 1});
    CHECK(add(a, row).to_vector() == std::vector<double>{11, 22, 33, 14, 25, 36});
    CHECK(sub(a, col).to_vector() == std::vector<double>{-99, -98, -97, -196, -195, -194});
    CHECK(mul(col, row).shape() == Shape{2, 3});
    CHECK(mul(col, row).to_vector() == std::vector<double>{1000, 2000, 3000, 2000, 4000, 6000});
    CHECK(div(a, Tensor::scalar(2, DType::F64)).flat(5) == 3.0);
    // (B, C, H, W) + (B, C, 1, 1): the time-embedding add of the U-Net
    Tensor x = Tensor::zeros({2, 3, 2, 2}, DType::F64), t = vec({1, 2, 3, 4, 5, 6}, {2, 3, 1, 1});
    Tensor y = add(x, t);
    CHECK(y.at({1, 2, 1, 1}) == 6.0);
    CHECK(y.at({0, 1, 0, 1}) == 2.0);
    CHECK(broadcast_shapes({4, 1, 3}, {2, 1}, "test") == Shape{4, 2, 3});
    CHECK_THROWS_WITH(add(a, vec({1, 2}, {2})), "add: shapes (2, 3) and (2) do not broadcast");
}

TEST_CASE("binary ops above the parallel threshold: long rows split over the team, element by element") {
    // one row of 3 * 40000 (same shapes), 2 rows of 60000 (a (2, 1) operand), 3 rows against a row
    // vector: each split into pieces of about 8192 elements, the last piece shorter
    const Shape shapes[][2] = {{{3, 40000}, {3, 40000}}, {{2, 60000}, {2, 1}}, {{3, 40001}, {40001}}};
    for (const auto& s : shapes) {
        Tensor a(s[0], DType::F32), b(s[1], DType::F32);
        for (int64_t i = 0; i < a.numel(); i++) a.data<float>()[i] = float(i % 977);
        for (int64_t i = 0; i < b.numel(); i++) b.data<float>()[i] = float(i % 13) + 0.5f;
        const Tensor y = mul(a, b);
        const int64_t n = a.shape().back(), nb = b.shape().back(), rb = b.numel() / nb;
        int64_t wrong = 0;
        for (int64_t i = 0; i < y.numel(); i++) {
            const int64_t r = i / n, j = i % n;
            const float bv = b.data<float>()[(rb == 1 ? 0 : r) * nb + (nb == 1 ? 0 : j)];
            wrong += y.data<float>()[i] != a.data<float>()[i] * bv;
        }
        INFO("shape ", shape_str(s[0]), " * ", shape_str(s[1]));
        CHECK(wrong == 0);
    }
}

TEST_CASE("unary ops and in-place accumulation") {
    Tensor x = vec({0, 1, -2}, {3});
    CHECK(exp(x).flat(1) == doctest::Approx(2.718281828));
    CHECK(sigmoid(x).flat(0) == 0.5);
    CHECK(silu(x).flat(2) == doctest::Approx(-2.0 / (1 + std::exp(2.0))));
    CHECK(tanh(x).flat(1) == doctest::Approx(0.761594156));
    Tensor acc = Tensor::ones({3}, DType::F64);
    axpy_(acc, 2.0, x);
    CHECK(acc.to_vector() == std::vector<double>{1, 3, -3});
}

TEST_CASE("reductions over dims, with keepdim, and max with argmax") {
    Tensor x = vec({1, 5, 3, 4, 2, 6}, {2, 3});
    CHECK(sum(x).item() == 21.0);
    CHECK(sum(x, {0}).to_vector() == std::vector<double>{5, 7, 9});
    CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
    CHECK(mean(x, {-1}).to_vector() == std::vector<double>{3, 4});
    std::vector<int64_t> arg;
    CHECK(max(x, {1}, false, &arg).to_vector() == std::vector<double>{5, 6});
    CHECK(arg == std::vector<int64_t>{1, 5});
    CHECK(sum_to_shape(x, {1, 3}).to_vector() == std::vector<double>{5, 7, 9});
    CHECK(expand(vec({1, 2}, {2, 1}), {2, 3}).to_vector() == std::vector<double>{1, 1, 1, 2, 2, 2});
    CHECK_THROWS_WITH(sum(x, {2}), "sum: dim 2 out of range for a 2-dimensional tensor");
}

TEST_CASE("matmul and bmm with transpose flags") {
    Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});  // [[1,2,3],[4,5,6]]
    Tensor b = vec({1, 0, 0, 1, 1, 1}, {3, 2});  // [[1,0],[0,1],[1,1]]
    CHECK(matmul(a, b).to_vector() == std::vector<double>{4, 5, 10, 11});
    CHECK(matmul(a, a, false, true).to_vector() == std::vector<double>{14, 32, 32, 77});  // a a^T
    CHECK(matmul(a, a, true, false).shape() == Shape{3, 3});                                // a^T a
    CHECK(matmul(a, a, true, false).at({2, 2}) == 45.0);
    CHECK(matmul(b, a, true, true).to_vector() == std::vector<double>{4, 10, 5, 11});       // b^T a^T
    Tensor ba = concat({a.reshape({1, 2, 3}), mul_scalar(a, 2).reshape({1, 2, 3})}, 0);
    Tensor c = bmm(ba, ba, false, true);
    CHECK(c.shape() == Shape{2, 2, 2});
    CHECK(c.at({1, 0, 1}) == 4 * 32.0);
    CHECK_THROWS_WITH(bmm(ba, ba), "bmm: inner dimensions differ: (2, 2, 3) x (2, 2, 3)");
}

TEST_CASE("concat, slice, permute, gather") {
    Tensor a = vec({1, 2, 3, 4}, {2, 2}), b = vec({5, 6}, {2, 1});
    Tensor c = concat({a, b}, 1);
    CHECK(c.to_vector() == std::vector<double>{1, 2, 5, 3, 4, 6});
    CHECK(slice(c, 1, 1, 3).to_vector() == std::vector<double>{2, 5, 4, 6});
    Tensor d = Tensor::zeros({2, 3}, DType::F64);
    slice_backward_(d, vec({1, 1, 1, 1}, {2, 2}), 1, 1);
    CHECK(d.to_vector() == std::vector<double>{0, 1, 1, 0, 1, 1});
    Tensor x = Tensor::arange(0, 24, 1, DType::F64).reshape({2, 3, 4});
    Tensor p = permute(x, {2, 0, 1});
    CHECK(p.shape() == Shape{4, 2, 3});
    CHECK(p.at({3, 1, 2}) == x.at({1, 2, 3}));
    CHECK(p.at({1, 0, 2}) == x.at({0, 2, 1}));
    Tensor table = vec({0.1, 0.2, 0.3}, {3});
    CHECK(gather(table, {2, 0, 2}).to_vector() == std::vector<double>{0.3, 0.1, 0.3});
    Tensor acc = Tensor::zeros({3}, DType::F64);
    scatter_add_(acc, {2, 0, 2}, vec({1, 2, 3}, {3}));
    CHECK(acc.to_vector() == std::vector<double>{2, 0, 4});
    CHECK_THROWS_WITH(gather(table, {3}), "gather: index 3 out of range for 3 rows");
    CHECK_THROWS_WITH(concat({a, vec({1, 2, 3}, {1, 3})}, 1), "concat: shapes (2, 2) and (1, 3) differ outside dim 1");
    CHECK_THROWS_WITH(permute(x, {0, 0, 1}), "permute: 3 dims is not a permutation of the 3 dims of (2, 3, 4)");
}

TEST_CASE("sum over every subset of dims agrees with a brute-force sum") {
    // covers the fast paths (reduced blocks around a kept one, a reduced middle) and the general one
    Shape s{2, 3, 1, 4, 5};
    Tensor x = Tensor::arange(0, 120, 1, DType::F64).reshape(s);
    for (int mask = 0; mask < 32; mask++) {
        std::vector<int> dims;
        for (int d = 0; d < 5; d++)
            if (mask >> d & 1) dims.push_back(d);
        if (dims.empty()) continue;
        CAPTURE(mask);
        Tensor y = sum(x, dims, true);
        Tensor expect = Tensor::zeros(y.shape(), DType::F64);
        for (int64_t i = 0; i < x.numel(); i++) {
            int64_t rem = i, o = 0, stride = 1;
            for (int d = 4; d >= 0; d--) {
                int64_t idx = rem % s[size_t(d)];
                rem /= s[size_t(d)];
                if (!(mask >> d & 1)) { o += idx * stride; stride *= s[size_t(d)]; }
            }
            expect.set_flat(o, expect.flat(o) + x.flat(i));
        }
        CHECK(max_abs_diff(y, expect) == 0.0);
    }
}
