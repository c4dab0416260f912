// The vector instruction set a CPU kernel may use, decided once at run time (x86-64).
//
// Wheels are compiled for baseline x86-64 (SSE2). A loop that gains a lot from wider
// vectors is compiled a few times with `TA_TARGET("avx512f")` / `TA_TARGET("avx2")` and
// the kernel calls the variant `cpu_isa()` names: the widest the CPU *and* the operating
// system (the XSAVE state it enables) support. Detection is cpuid/xgetbv, inline (no
// ifunc, no libgcc helper), so it works alike in GCC and clang builds.
// TORCH_ARTIC_CPU_ISA=baseline|avx2|avx512 (read once, at the first use) caps the choice,
// e.g. to compare the variants in tests; it never selects a set the CPU lacks.
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#include <cpuid.h>
#define TA_X86_DISPATCH 1
#define TA_TARGET(isa) __attribute__((target(isa)))
#else
#define TA_TARGET(isa)
#endif

namespace torch_artic {

enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

inline Isa detect_isa() {
#ifdef TA_X86_DISPATCH
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::kBaseline;
  const bool osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  if (!osxsave || !avx) return Isa::kBaseline;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const bool ymm = (lo & 0x6u) == 0x6u;     // SSE and AVX state
  const bool zmm = (lo & 0xe6u) == 0xe6u;   // and the opmask and upper ZMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::kBaseline;
  const bool avx2 = (b >> 5) & 1u, avx512f = (b >> 16) & 1u;
  if (avx512f && zmm) return Isa::kAvx512;
  if (avx2 && ymm) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

inline Isa cpu_isa() {
  static const Isa isa = [] {
    Isa best = detect_isa();
    if (const char* cap = std::getenv("TORCH_ARTIC_CPU_ISA")) {
      Isa want = best;
      if (std::strcmp(cap, "baseline") == 0) want = Isa::kBaseline;
      if (std::strcmp(cap, "avx2") == 0) want = Isa::kAvx2;
      if (static_cast<int>(want) < static_cast<int>(best)) best = want;
    }
    return best;
  }();
  return isa;
}

}  // namespace torch_artic
