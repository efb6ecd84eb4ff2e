// The convolution kernels of conv_kernels.h built for AVX2 + FMA.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tensor/fast/conv_isa.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace dl::conv_detail::isa_avx2 {
#define DL_SIMD_AVX2
#include "tensor/fast/simd.h"
constexpr const char* kIsaName = "avx2";
#include "tensor/fast/conv_kernels.h"
#undef DL_SIMD_AVX2
}  // namespace dl::conv_detail::isa_avx2
#pragma GCC pop_options

const dl::conv_detail::ConvIsa& dl::conv_detail::conv_isa_avx2() { return isa_avx2::kConvIsa; }
