// The fast float32 paths: the one door from tensor/'s reference kernels into tensor/fast/.
//
// Each function here does what the reference kernel of the same name in tensor/ does, on float32,
// faster; the top-level kernels call it unless the build is the reference-only one (make REF=1,
// which defines DL_REF and compiles nothing in this folder). tests/test_kernels.cpp holds every
// one of them to its reference on awkward shapes; README.md in this folder says what each buys.
#pragma once
#include <cstdint>

#include "tensor/conv.h"
#include "tensor/cpu.h"

namespace dl::fast {

// tensor/conv.h: direct SIMD tiles, Winograd F(4x4, 3x3) or bf16 on AMX, per precision() and shape
// (conv.cpp plans each call).
void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx, bool accumulate);
void conv2d_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* dbias);
// Both backward passes in one call, sharing the blocked copies of dy, where the plan does so
// (Winograd); conv2d_backward_shared says where.
bool conv2d_backward_shared(const Conv2dParams& p);
void conv2d_backward(const Conv2dParams& p, const float* x, const float* dy, const float* w, float* dx, bool accumulate,
                     float* dw, float* dbias);

// tensor/gemm.h: Goto/BLIS-style packed SGEMM (gemm.cpp).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// tensor/kernels.h: GroupNorm (+SiLU), SiLU, upsampling and softmax in V16 (kernels.cpp).
void group_norm_forward(const float* x, const float* gamma, const float* beta, int64_t B, int64_t C, int64_t HW,
                        int64_t G, double eps, float* y, float* mean, float* rstd, bool silu);
void group_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                         int64_t B, int64_t C, int64_t HW, int64_t G, float* dx, float* dgamma, float* dbeta,
                         bool accumulate, const float* silu_beta, const float* silu_y);
void silu_forward(const float* x, float* y, int64_t n);
void silu_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate);
void upsample_nearest2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W);
void upsample_nearest2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W);
void softmax_forward(const float* x, float* y, int64_t rows, int64_t n);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t n);

// tensor/cpu.h: what the CPU has (CPUID, XGETBV) and its denormal mode (MXCSR), in cpuid.cpp.
SimdLevel simd_detect();
bool amx_usable();                 // AMX-BF16, AMX-TILE, AVX512_BF16, and the OS grants the tile state
void flush_denormals_this_thread();  // MXCSR.FTZ and .DAZ on
bool flush_denormals_this_thread_on();

}  // namespace dl::fast
