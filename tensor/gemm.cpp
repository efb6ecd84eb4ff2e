// GEMM. gemm_ref is the plain loop: the float64 path, the reference the fast path is tested
// against, and the whole of gemm in the reference build (make REF=1). gemm<float> hands the work to
// the packed SGEMM of tensor/fast/gemm.cpp.
#include "tensor/gemm.h"

#include <omp.h>

#include <type_traits>
#ifndef DL_REF
#include "tensor/fast/fast.h"
#endif

namespace dl {

template <class T>
void gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
              int64_t ldb, T beta, T* C, int64_t ldc) {
    // Rows of C are independent: parallel over i unless the caller is already parallel.
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * N * K > (1 << 18))
    for (int64_t i = 0; i < M; i++) {
        T* c = C + i * ldc;
        for (int64_t j = 0; j < N; j++) c[j] = beta == T(0) ? T(0) : beta * c[j];
        for (int64_t p = 0; p < K; p++) {
            T a = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
            if (tb)
                for (int64_t j = 0; j < N; j++) c[j] += a * B[j * ldb + p];
            else
                for (int64_t j = 0; j < N; j++) c[j] += a * B[p * ldb + j];
        }
    }
}

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
#ifndef DL_REF
    if constexpr (std::is_same_v<T, float>) return fast::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
    gemm_ref<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template void gemm_ref<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm_ref<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*, int64_t, double, double*, int64_t);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace dl

