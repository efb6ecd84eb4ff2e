// CPUID detection, the SIMD level switch, FTZ/DAZ, and per-thread scratch arenas (see cpu.h).
#include "tensor/cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/conv_isa.h"
#include "tensor/tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DL_X86 1
#endif

namespace dl {

const char* simd_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::AVX512: return "avx512";
        case SimdLevel::AVX2: return "avx2";
        default: return "portable";
    }
}

#ifdef DL_X86
// XCR0 (which register state the OS saves), read with the xgetbv instruction.
__attribute__((target("xsave"))) static uint64_t read_xcr0() { return _xgetbv(0); }
#endif

static SimdLevel detect() {
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

SimdLevel simd_detected() {
    static const SimdLevel level = detect();
    return level;
}

static SimdLevel initial_level() {
    SimdLevel level = simd_detected();
    if (const char* env = std::getenv("DL_SIMD")) {
        SimdLevel cap = level;
        if (!std::strcmp(env, "portable")) cap = SimdLevel::PORTABLE;
        else if (!std::strcmp(env, "avx2")) cap = SimdLevel::AVX2;
        else if (!std::strcmp(env, "avx512")) cap = SimdLevel::AVX512;
        if (int(cap) < int(level)) level = cap;
    }
    return level;
}

static std::atomic<int>& level_store() {
    static std::atomic<int> level{int(initial_level())};
    return level;
}

SimdLevel simd_level() { return SimdLevel(level_store().load(std::memory_order_relaxed)); }

void set_simd_level(SimdLevel level) {
    if (int(level) > int(simd_detected()))
        fail("set_simd_level: this CPU supports up to ", simd_name(simd_detected()), ", asked for ", simd_name(level));
    level_store().store(int(level), std::memory_order_relaxed);
}

const char* precision_name(Precision p) {
    return p == Precision::BF16 ? "bf16" : p == Precision::WINOGRAD ? "winograd" : "fp32";
}

bool bf16_available() { return conv_detail::amx_usable(); }

static std::atomic<int> g_precision{int(Precision::FP32)};

Precision precision() { return Precision(g_precision.load(std::memory_order_relaxed)); }

void set_precision(Precision p) {
    if (p == Precision::BF16 && !bf16_available())
        fail("set_precision: bf16 needs AMX-BF16 and AVX512_BF16 (Intel Sapphire Rapids or later) with the OS's tile "
             "state; this CPU or OS lacks them");
    g_precision.store(int(p), std::memory_order_relaxed);
}

static void flush_this_thread() {
#ifdef DL_X86
    _mm_setcsr(_mm_getcsr() | 0x8040);  // bit 15 FTZ, bit 6 DAZ
#endif
}

void set_flush_denormals() {
    flush_this_thread();
    // One parallel region of the largest team: the pool's threads persist and keep their MXCSR.
#pragma omp parallel num_threads(omp_get_max_threads())
    flush_this_thread();
}

bool flush_denormals_on() {
#ifdef DL_X86
    return (_mm_getcsr() & 0x8040) == 0x8040;
#else
    return false;
#endif
}

namespace {
struct ScratchArena {
    float* ptr[kScratchSlots] = {};
    size_t cap[kScratchSlots] = {};
    ~ScratchArena() {
        for (int s = 0; s < kScratchSlots; s++) ::operator delete(ptr[s], std::align_val_t(64));
    }
};
}  // namespace

float* scratch(int slot, size_t floats) {
    thread_local ScratchArena arena;
    if (slot < 0 || slot >= kScratchSlots) fail("scratch: slot ", slot, " out of range 0..", kScratchSlots - 1);
    if (floats > arena.cap[slot]) {
        ::operator delete(arena.ptr[slot], std::align_val_t(64));
        arena.ptr[slot] = nullptr;
        arena.cap[slot] = 0;
        size_t cap = floats + floats / 4 + 64;  // grow with headroom, and a margin for vector over-reads
        arena.ptr[slot] = static_cast<float*>(::operator new(cap * sizeof(float), std::align_val_t(64)));
        arena.cap[slot] = cap;
    }
    return arena.ptr[slot];
}

int team_threads(int64_t work, int64_t grain) {
    if (omp_in_parallel()) return 1;
    return int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), work / grain)));
}

}  // namespace dl
