#include "kernels/cpu/isa.h"

#include <algorithm>
#include <atomic>

#if MOESERVE_X86_SIMD
#include <cpuid.h>
#endif

namespace moeserve::kernels {
namespace {

#if MOESERVE_X86_SIMD
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports has no "f16c".
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

Isa probe_isa() {
#if MOESERVE_X86_SIMD
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    if (!__builtin_cpu_supports("avx512vbmi")) return Isa::kAvx512;
    // The BF16 kernels also use 128-bit masked loads and stores (AVX512VL), which every
    // CPU with AVX512_BF16 has; checked anyway.
    const bool bf16 = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
    return bf16 ? Isa::kAvx512Bf16 : Isa::kAvx512Vbmi;
  }
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{detected_isa()};
  return isa;
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = probe_isa();
  return isa;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

Isa set_isa_for_testing(Isa isa) {
  const Isa clamped = std::min(isa, detected_isa());  // enum order is capability order
  active().store(clamped, std::memory_order_relaxed);
  return clamped;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx512Vbmi: return "avx512vbmi";
    case Isa::kAvx512Bf16: return "avx512bf16";
  }
  return "unknown";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vbmi, Isa::kAvx512Bf16}) {
    if (name == isa_name(isa)) return isa;
  }
  return std::nullopt;
}

}  // namespace moeserve::kernels
