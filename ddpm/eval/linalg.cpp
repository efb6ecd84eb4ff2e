#include "ddpm/eval/linalg.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dl {

SymmetricEigen symmetric_eigen(const Tensor& a_in) {
    if (a_in.ndim() != 2 || a_in.dim(0) != a_in.dim(1)) fail("symmetric_eigen: expected a square matrix, got ", shape_str(a_in.shape()));
    const int64_t n = a_in.dim(0);
    std::vector<double> a(size_t(n * n)), v(size_t(n * n), 0.0);  // (n, n) each
    for (int64_t i = 0; i < n * n; i++) a[size_t(i)] = a_in.flat(i);
    double total = 0;
    for (double x : a) total += x * x;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            if (std::abs(a[size_t(i * n + j)] - a[size_t(j * n + i)]) > 1e-9 * std::sqrt(total))
                fail("symmetric_eigen: the matrix is not symmetric: a[", i, ", ", j, "] = ", a[size_t(i * n + j)], ", a[", j, ", ", i,
                     "] = ", a[size_t(j * n + i)]);
    for (int64_t i = 0; i < n; i++) v[size_t(i * n + i)] = 1;
    auto A = [&](int64_t i, int64_t j) -> double& { return a[size_t(i * n + j)]; };
    auto V = [&](int64_t i, int64_t j) -> double& { return v[size_t(i * n + j)]; };

    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) off += 2 * A(p, q) * A(p, q);
        if (off <= 1e-30 * total || off == 0) break;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                if (A(p, q) == 0) continue;
                double theta = (A(q, q) - A(p, p)) / (2 * A(p, q));
                double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
                double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int64_t k = 0; k < n; k++) {  // A J: columns p and q
                    double akp = A(k, p), akq = A(k, q);
                    A(k, p) = c * akp - s * akq;
                    A(k, q) = s * akp + c * akq;
                }
                for (int64_t k = 0; k < n; k++) {  // J^T (A J): rows p and q
                    double apk = A(p, k), aqk = A(q, k);
                    A(p, k) = c * apk - s * aqk;
                    A(q, k) = s * apk + c * aqk;
                }
                for (int64_t k = 0; k < n; k++) {  // V J
                    double vkp = V(k, p), vkq = V(k, q);
                    V(k, p) = c * vkp - s * vkq;
                    V(k, q) = s * vkp + c * vkq;
                }
            }
    }
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return A(x, x) < A(y, y); });
    SymmetricEigen e{{}, Tensor({n, n}, DType::F64)};
    double* out = e.vectors.data<double>();
    for (int64_t j = 0; j < n; j++) {
        e.values.push_back(A(order[size_t(j)], order[size_t(j)]));
        for (int64_t i = 0; i < n; i++) out[i * n + j] = V(i, order[size_t(j)]);
    }
    return e;
}

Tensor sqrtm_psd(const Tensor& a) {
    SymmetricEigen e = symmetric_eigen(a);
    const int64_t n = int64_t(e.values.size());
    const double* v = e.vectors.data<double>();
    Tensor r = Tensor::zeros({n, n}, DType::F64);  // (n, n) = sum_k sqrt(w_k) v_k v_k^T
    double* out = r.data<double>();
    for (int64_t k = 0; k < n; k++) {
        double w = std::sqrt(std::max(e.values[size_t(k)], 0.0));
        if (w == 0) continue;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) out[i * n + j] += w * v[i * n + k] * v[j * n + k];
    }
    return r;
}

}  // namespace dl
