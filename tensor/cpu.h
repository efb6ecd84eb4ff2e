// What the CPU can do, and the per-thread state the fast kernels rely on.
//
// SIMD level. The float32 kernels (gemm, conv, kernels) exist in three builds of the same source:
// AVX-512 (F, VL, BW, DQ), AVX2+FMA and portable C++. Each build is compiled with a GCC target
// pragma, so all three are in the binary whatever -march says (ARCH=x86-64 gives a portable
// build that still uses AVX-512 where the CPU has it). The level is chosen once from CPUID (and
// XGETBV: the OS must save the wide registers); the environment variable DL_SIMD=avx512|avx2|
// portable caps it, and set_simd_level() forces it (tests run every level the CPU has).
//
// Flush to zero. Denormal floats make trained-weight convolutions many times slower
// (PyTorch issues #23862, #21734). set_flush_denormals() sets MXCSR.FTZ and MXCSR.DAZ in the
// calling thread and in every thread of the OpenMP pool; call it once at the top of main().
//
// Scratch memory. Kernels that need workspace (packed panels, blocked copies of an image) take it
// from scratch(), a per-thread arena of slots that grow to the largest request and are reused,
// so a training step does not allocate in its inner loops.
#pragma once
#include <cstdint>
#include <cstddef>

namespace dl {

// The reference build (make REF=1, -DDL_REF) compiles none of tensor/fast/: every kernel runs its
// plain loop, simd_detected() is PORTABLE, precision() stays FP32 and bf16 is unavailable. Tests of
// a fast path ask this and say they are skipped.
#ifdef DL_REF
constexpr bool kFastKernels = false;
#else
constexpr bool kFastKernels = true;
#endif

enum class SimdLevel { PORTABLE = 0, AVX2 = 1, AVX512 = 2 };

const char* simd_name(SimdLevel level);  // "portable", "avx2", "avx512"
SimdLevel simd_detected();               // the best level this CPU and OS support
SimdLevel simd_level();                  // the level the kernels use now
// Force a level (tests, benchmarks). Throws dl::Error if the CPU lacks it.
void set_simd_level(SimdLevel level);

// Precision of conv2d's multiplies. FP32 (the default): float32 everywhere. WINOGRAD: float32 too,
// but the 3x3 stride-1 convolutions with more than one channel on each side (all three passes) use
// Winograd F(4x4, 3x3) (tensor/fast/conv_winograd.cpp): 4x fewer multiplies, a rounding error about ten
// times the direct sum's (still 1e-5 of the values), on every CPU. BF16: conv2d rounds
// its operands (x, w, and dy in the backward passes) to bfloat16 and sums the products in float32,
// on Intel AMX tiles (Sapphire Rapids and later), for the stride-1 convolutions with more than one
// channel on each side; the others, and everything outside conv2d (parameters, gradients, norms,
// softmax, loss, optimizer), stay float32, and the float64 path is never rounded.
// bf16_available(): the CPU has AMX-BF16 and AVX512_BF16 and the OS grants the tile state.
// The programs take --precision fp32|winograd|bf16 (apps/cli.h); set_precision(BF16) throws where
// unavailable.
enum class Precision { FP32 = 0, BF16 = 1, WINOGRAD = 2 };
const char* precision_name(Precision p);  // "fp32", "bf16", "winograd"
bool bf16_available();
Precision precision();
void set_precision(Precision p);

// MXCSR FTZ and DAZ on, in this thread and every OpenMP thread. A no-op off x86.
void set_flush_denormals();
bool flush_denormals_on();  // FTZ and DAZ both set in the calling thread

// Threads for a parallel region over `work` units: at least `grain` units per thread, at most
// omp_get_max_threads(), and 1 inside another parallel region (the kernels never nest teams).
int team_threads(int64_t work = INT64_MAX, int64_t grain = 1);

// A 64-byte-aligned buffer of at least `floats` floats, owned by the calling thread. Slots are
// independent buffers (0..kScratchSlots-1); a later call with the same slot may move the buffer,
// so take all the slots a kernel needs before using any of them. Contents are undefined.
constexpr int kScratchSlots = 8;
float* scratch(int slot, size_t floats);

}  // namespace dl
