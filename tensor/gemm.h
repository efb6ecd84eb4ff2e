// General matrix multiply, row-major: C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C.
// op(A) = A, stored (M,K) with row stride lda, or with trans_a A^T, A stored (K,M).
// op(B) = B, stored (K,N) with row stride ldb, or with trans_b B^T, B stored (N,K).
// beta == 0 overwrites C without reading it.
//
// gemm<double> is the plain triple loop, gemm_ref; it is the reference the fast float32 path is
// tested against. gemm<float> is the fast path. Called from inside an OpenMP parallel region,
// gemm runs on the calling thread only (never a parallel region nested in another).
#pragma once
#include <cstdint>

namespace dl {

template <class T>
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace dl
