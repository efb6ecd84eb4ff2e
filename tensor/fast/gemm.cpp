// The fast float32 GEMM (fast.h), speeding up gemm_ref of tensor/gemm.cpp: a Goto/BLIS-style SGEMM (Goto and van de Geijn 2008; Van Zee and van de Geijn 2015):
//
//   for jc in N by NC:                    B block (KC x NC) packed, lives in L2
//     for pc in K by KC:                  (beta applies on the first KC block only)
//       pack B[pc:, jc:] into NR-wide micro-panels  (KC x NR each, k-major)
//       for ic in M by MC:
//         pack A[ic:, pc:] into MR-tall micro-panels (KC x MR each, k-major)
//         for ir in MC by MR:             A micro-panel stays in L1 ...
//           for jr in NC by NR:           ... while B micro-panels stream from L2
//             C[ir:ir+MR, jr:jr+NR] = alpha * A_panel * B_panel + beta * C   (microkernel)
//
// The microkernel keeps an MR x NR tile of C in registers; per k it loads NR/16 vectors of B and
// broadcasts MR scalars of A: MR * NR/16 FMAs for MR + NR/16 loads. The packers handle the
// transpose flags, so the microkernel sees one layout. Packed panels live in per-thread scratch.
//
// Three builds of the microkernel (simd.h): AVX-512 12x32 (24 zmm accumulators), AVX2 6x16
// (12 ymm), portable 4x16, picked at run time by simd_level(). Measured on Zen 4, which runs a
// 512-bit FMA as two 256-bit halves (so both x86 builds have the same peak, about 117 GFLOP/s per
// core): both reach 88-96 GFLOP/s single-threaded on 256-1024 squares. AVX-512 is the default
// where the CPU has it: equal here, faster where 512-bit FMAs are full width (Intel), and the
// convolution kernels, which need its 32 registers, gain 10-40% from it on Zen 4 too.
//
// Threads: outside a parallel region C is split into a grid of nearly equal blocks (along N when
// it is wide enough, else along M), one per thread, each running the loop nest above on its own
// packed copies. Inside a parallel region gemm runs on the calling thread only.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "tensor/cpu.h"
#include "tensor/fast/fast.h"

namespace dl::fast {

// ---- microkernels, one per instruction set ----------------------------------------------------

using GemmUkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                             float alpha, float beta);
struct GemmIsa {
    int mr, nr;
    GemmUkernel ukernel;
};

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace gemm_avx512 {
#define DL_SIMD_AVX512
#include "tensor/fast/simd.h"
#undef DL_SIMD_AVX512
#include "tensor/fast/gemm_ukernel.h"
}  // namespace gemm_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace gemm_avx2 {
#define DL_SIMD_AVX2
#include "tensor/fast/simd.h"
#undef DL_SIMD_AVX2
#include "tensor/fast/gemm_ukernel.h"
}  // namespace gemm_avx2
#pragma GCC pop_options

namespace gemm_portable {
#include "tensor/fast/simd.h"
#include "tensor/fast/gemm_ukernel.h"
}  // namespace gemm_portable

static const GemmIsa& gemm_isa() {
    static const GemmIsa avx512{12, 32, gemm_avx512::ukernel<12, 2>};
    static const GemmIsa avx2{6, 16, gemm_avx2::ukernel<6, 1>};
    static const GemmIsa portable{4, 16, gemm_portable::ukernel<4, 1>};
    switch (simd_level()) {
        case SimdLevel::AVX512: return avx512;
        case SimdLevel::AVX2: return avx2;
        default: return portable;
    }
}

// ---- packing -------------------------------------------------------------------------------------

constexpr int64_t KC = 256, MC = 144, NC = 512;  // KC x NR B micro-panel 32 KiB; KC x NC B block 512 KiB

// op(A)[i0:i0+mc, p0:p0+kc] -> ceil(mc/MR) panels of (kc, MR), rows past mc zero.
static void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                   float* out) {
    for (int64_t i = 0; i < mc; i += mr) {
        const int64_t rows = std::min<int64_t>(mr, mc - i);
        if (ta) {  // op(A)[r, k] = A[k, r]: rows of the panel are contiguous in A
            for (int64_t k = 0; k < kc; k++) {
                const float* src = A + (p0 + k) * lda + i0 + i;
                float* dst = out + k * mr;
                for (int64_t r = 0; r < rows; r++) dst[r] = src[r];
                for (int64_t r = rows; r < mr; r++) dst[r] = 0.f;
            }
        } else {
            for (int64_t r = 0; r < rows; r++) {
                const float* src = A + (i0 + i + r) * lda + p0;
                for (int64_t k = 0; k < kc; k++) out[k * mr + r] = src[k];
            }
            for (int64_t r = rows; r < mr; r++)
                for (int64_t k = 0; k < kc; k++) out[k * mr + r] = 0.f;
        }
        out += kc * mr;
    }
}

// op(B)[p0:p0+kc, j0:j0+nc] -> ceil(nc/NR) panels of (kc, NR), columns past nc zero.
static void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr,
                   float* out) {
    for (int64_t j = 0; j < nc; j += nr) {
        const int64_t cols = std::min<int64_t>(nr, nc - j);
        if (!tb) {  // rows of the panel are contiguous in B
            for (int64_t k = 0; k < kc; k++) {
                const float* src = B + (p0 + k) * ldb + j0 + j;
                float* dst = out + k * nr;
                for (int64_t c = 0; c < cols; c++) dst[c] = src[c];
                for (int64_t c = cols; c < nr; c++) dst[c] = 0.f;
            }
        } else {  // op(B)[k, c] = B[c, k]
            for (int64_t c = 0; c < cols; c++) {
                const float* src = B + (j0 + j + c) * ldb + p0;
                for (int64_t k = 0; k < kc; k++) out[k * nr + c] = src[k];
            }
            for (int64_t c = cols; c < nr; c++)
                for (int64_t k = 0; k < kc; k++) out[k * nr + c] = 0.f;
        }
        out += kc * nr;
    }
}

// The loop nest of the header comment on C[m0:m1, n0:n1], on the calling thread.
static void sgemm_block(const GemmIsa& isa, bool ta, bool tb, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                        int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc) {
    const int mr = isa.mr, nr = isa.nr;
    const int64_t nc_max = std::min<int64_t>(NC, (n1 - n0 + nr - 1) / nr * nr);
    const int64_t mc_max = std::min<int64_t>(MC, (m1 - m0 + mr - 1) / mr * mr);
    const int64_t kc_max = std::min<int64_t>(KC, K);
    float* bp = scratch(6, size_t(kc_max * nc_max));  // (nc/NR panels, kc, NR)
    float* ap = scratch(7, size_t(kc_max * mc_max));  // (mc/MR panels, kc, MR)
    for (int64_t jc = n0; jc < n1; jc += NC) {
        const int64_t nc = std::min(NC, n1 - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            const float beta_k = pc == 0 ? beta : 1.f;
            pack_b(tb, B, ldb, pc, kc, jc, nc, nr, bp);
            for (int64_t ic = m0; ic < m1; ic += MC) {
                const int64_t mc = std::min(MC, m1 - ic);
                pack_a(ta, A, lda, ic, mc, pc, kc, mr, ap);
                for (int64_t ir = 0; ir < mc; ir += mr)
                    for (int64_t jr = 0; jr < nc; jr += nr)
                        isa.ukernel(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                                    int(std::min<int64_t>(mr, mc - ir)), int(std::min<int64_t>(nr, nc - jr)), alpha,
                                    beta_k);
            }
        }
    }
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.f) {  // C = beta C
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
        return;
    }
    const GemmIsa& isa = gemm_isa();
    // Threads: about 2^17 FMAs per thread at least, and none inside a parallel region.
    int nt = team_threads(M * N * K, 1 << 17);
    if (nt == 1) {
        sgemm_block(isa, ta, tb, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Grid nt_m x nt_n: split N (in whole NR panels) while it has panels to spare, then M.
    int nt_n = int(std::min<int64_t>(nt, (N + isa.nr - 1) / isa.nr)), nt_m = 1;
    while (nt_n > 1 && nt % nt_n) nt_n--;
    nt_m = nt / nt_n;
    if (nt_m > 1 && M < int64_t(nt_m) * isa.mr) nt_m = 1;
#pragma omp parallel num_threads(nt_m * nt_n)
    {
        const int t = omp_get_thread_num(), tm = t / nt_n, tn = t % nt_n;
        const int64_t npan = (N + isa.nr - 1) / isa.nr, mpan = (M + isa.mr - 1) / isa.mr;
        const int64_t n0 = std::min(N, npan * tn / nt_n * isa.nr), n1 = std::min(N, npan * (tn + 1) / nt_n * isa.nr);
        const int64_t m0 = std::min(M, mpan * tm / nt_m * isa.mr), m1 = std::min(M, mpan * (tm + 1) / nt_m * isa.mr);
        if (m0 < m1 && n0 < n1) sgemm_block(isa, ta, tb, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

}  // namespace dl::fast
