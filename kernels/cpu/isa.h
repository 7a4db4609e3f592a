// Which instruction set the CPU kernels use. The best one the CPU supports is chosen once at
// run time (AVX-512 F+BW+VBMI+BF16, else AVX-512 F+BW+VBMI, else AVX-512 F+BW, else AVX2+FMA+F16C,
// else portable scalar code); nothing is compiled with global -mavx2/-mavx512f, so the binaries run
// on any x86-64 (and non-x86) machine. Tests force each path in turn to check all of them against
// the same references.
#pragma once

#include <optional>
#include <string_view>

// The x86 SIMD kernels are compiled in `#pragma GCC target` regions, which only GCC reads;
// other compilers (clang, for the fuzz build) build the scalar kernels alone, and
// detected_isa() is then kScalar.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOESERVE_X86_SIMD 1
#else
#define MOESERVE_X86_SIMD 0
#endif

namespace moeserve::kernels {

// In capability order: each level includes everything below it.
enum class Isa { kScalar, kAvx2, kAvx512, kAvx512Vbmi, kAvx512Bf16 };

// The best instruction set this CPU supports (computed once).
Isa detected_isa();
// The instruction set the kernels use now: detected_isa() unless overridden.
Isa active_isa();
// Forces `isa` for all later kernel calls; an ISA the CPU lacks falls back to the best
// supported one below it. Returns the ISA now active. Not meant to be changed while other
// threads run kernels.
Isa set_isa_for_testing(Isa isa);
const char* isa_name(Isa isa);
// The ISA whose isa_name is `name`, if any.
std::optional<Isa> isa_from_name(std::string_view name);

}  // namespace moeserve::kernels
