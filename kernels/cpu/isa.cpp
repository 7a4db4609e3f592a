#include "kernels/cpu/isa.h"

#include <algorithm>
#include <atomic>

namespace moeserve::kernels {
namespace {

Isa probe_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    return __builtin_cpu_supports("avx512vbmi") ? Isa::kAvx512Vbmi : Isa::kAvx512;
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
  }
  return "unknown";
}

}  // namespace moeserve::kernels
