// Small dense linear algebra in float64, for the evaluation's statistics (FID): the eigenvalues
// and eigenvectors of a symmetric matrix, and the square root of a positive semi-definite one.
// n the matrix side; matrices are Tensors (n, n), row-major.
//
// symmetric_eigen is the cyclic Jacobi method (Jacobi 1846; Golub and Van Loan, Matrix
// Computations, sec. 8.5): each rotation J in the (p, q) plane, with tan(phi) the smaller root of
// t^2 + 2 theta t - 1 = 0, theta = (a_qq - a_pp) / (2 a_pq), zeroes a_pq in J^T A J; sweeps over
// all pairs until the off-diagonal mass is below 1e-30 of the total (or 100 sweeps). Slow for
// big n (n^3 per sweep), exact to rounding, and simple: n is at most a few hundred here.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace dl {

struct SymmetricEigen {
    std::vector<double> values;  // (n) ascending
    Tensor vectors;              // (n, n) float64: column j is the unit eigenvector of values[j]
};
// a: (n, n) symmetric (float32 or float64); throws if it is not square or not symmetric to 1e-9 relative.
SymmetricEigen symmetric_eigen(const Tensor& a);

// V diag(sqrt(max(w, 0))) V^T: the symmetric square root of a PSD matrix (small negative
// eigenvalues from rounding count as 0). (n, n) float64.
Tensor sqrtm_psd(const Tensor& a);

}  // namespace dl
