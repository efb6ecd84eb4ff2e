// The convolution kernels of conv_kernels.h built for AVX-512 (F, VL, BW, DQ).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tensor/fast/conv_isa.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace dl::conv_detail::isa_avx512 {
#define DL_SIMD_AVX512
#include "tensor/fast/simd.h"
constexpr const char* kIsaName = "avx512";
#include "tensor/fast/conv_kernels.h"
#undef DL_SIMD_AVX512
}  // namespace dl::conv_detail::isa_avx512
#pragma GCC pop_options

const dl::conv_detail::ConvIsa& dl::conv_detail::conv_isa_avx512() { return isa_avx512::kConvIsa; }
