// The SIMD level switch, the precision, FTZ/DAZ, threads and per-thread scratch arenas (see cpu.h).
// What the CPU has is read in tensor/fast/cpuid.cpp; the reference build (make REF=1) has no fast
// kernels, so there the level is portable, bf16 unavailable and denormals left as they are.
#include "tensor/cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/tensor.h"
#ifndef DL_REF
#include "tensor/fast/fast.h"
#endif

namespace dl {

const char* simd_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::AVX512: return "avx512";
        case SimdLevel::AVX2: return "avx2";
        default: return "portable";
    }
}

SimdLevel simd_detected() {
#ifdef DL_REF
    return SimdLevel::PORTABLE;  // the reference build has no SIMD kernels to choose
#else
    static const SimdLevel level = fast::simd_detect();
    return level;
#endif
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

bool bf16_available() {
#ifdef DL_REF
    return false;
#else
    return fast::amx_usable();
#endif
}

static std::atomic<int> g_precision{int(Precision::FP32)};

Precision precision() { return Precision(g_precision.load(std::memory_order_relaxed)); }

void set_precision(Precision p) {
    if (p == Precision::BF16 && !bf16_available())
        fail("set_precision: bf16 needs AMX-BF16 and AVX512_BF16 (Intel Sapphire Rapids or later) with the OS's tile "
             "state; this CPU or OS lacks them");
    if (!kFastKernels) p = Precision::FP32;  // the reference loops are the one algorithm there
    g_precision.store(int(p), std::memory_order_relaxed);
}

void set_flush_denormals() {
#ifndef DL_REF
    fast::flush_denormals_this_thread();
    // One parallel region of the largest team: the pool's threads persist and keep their MXCSR.
#pragma omp parallel num_threads(omp_get_max_threads())
    fast::flush_denormals_this_thread();
#endif
}

bool flush_denormals_on() {
#ifdef DL_REF
    return false;
#else
    return fast::flush_denormals_this_thread_on();
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
