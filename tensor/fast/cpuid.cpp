// What the CPU has, read from CPUID and XGETBV, and its denormal mode in MXCSR (fast.h; tensor/cpu.h
// is the interface the rest of the project uses).
#include <cstdint>

#include "tensor/fast/fast.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define DL_X86 1
#endif

namespace dl::fast {

#ifdef DL_X86
// XCR0 (which register state the OS saves), read with the xgetbv instruction.
__attribute__((target("xsave"))) static uint64_t read_xcr0() { return _xgetbv(0); }
#endif

SimdLevel simd_detect() {
#ifdef DL_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return SimdLevel::PORTABLE;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!(osxsave && avx && fma)) return SimdLevel::PORTABLE;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return SimdLevel::PORTABLE;  // XMM and YMM state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return SimdLevel::PORTABLE;
    const bool avx2 = b & (1u << 5);
    if (!avx2) return SimdLevel::PORTABLE;
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // opmask, upper ZMM0-15, ZMM16-31
    if (f && dq && bw && vl && zmm_state) return SimdLevel::AVX512;
    return SimdLevel::AVX2;
#else
    return SimdLevel::PORTABLE;
#endif
}

void flush_denormals_this_thread() {
#ifdef DL_X86
    _mm_setcsr(_mm_getcsr() | 0x8040);  // bit 15 FTZ, bit 6 DAZ
#endif
}

bool amx_usable() {
#ifdef DL_X86
    static const bool ok = [] {
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
        if (!(amx_bf16 && amx_tile) || simd_detect() != SimdLevel::AVX512) return false;
        if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return false;  // AVX512_BF16 (conversions)
        // Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
        return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }();
    return ok;
#else
    return false;
#endif
}

bool flush_denormals_this_thread_on() {
#ifdef DL_X86
    return (_mm_getcsr() & 0x8040) == 0x8040;
#else
    return false;
#endif
}

}  // namespace dl::fast
