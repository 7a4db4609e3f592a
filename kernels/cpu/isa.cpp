#include "kernels/cpu/isa.h"

#include <atomic>

namespace moeserve::kernels {
namespace {

Isa probe_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::kAvx2;
  }
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

void set_isa_for_testing(Isa isa) {
  const Isa clamped = (isa == Isa::kAvx2 && detected_isa() != Isa::kAvx2) ? Isa::kScalar : isa;
  active().store(clamped, std::memory_order_relaxed);
}

const char* isa_name(Isa isa) { return isa == Isa::kAvx2 ? "avx2" : "scalar"; }

}  // namespace moeserve::kernels
