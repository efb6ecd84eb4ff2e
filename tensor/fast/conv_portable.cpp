// The convolution kernels of conv_kernels.h built as portable C++: V16 is float[16] and plain
// loops, vectorized by the compiler as far as -march allows. Used where the CPU lacks AVX2.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tensor/fast/conv_isa.h"

namespace dl::conv_detail::isa_portable {
#include "tensor/fast/simd.h"
constexpr const char* kIsaName = "portable";
#include "tensor/fast/conv_kernels.h"
}  // namespace dl::conv_detail::isa_portable

const dl::conv_detail::ConvIsa& dl::conv_detail::conv_isa_portable() { return isa_portable::kConvIsa; }
