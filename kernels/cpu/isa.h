// Which instruction set the CPU kernels use. The best one the CPU supports is chosen once at
// run time (AVX2+FMA+F16C, else portable scalar code); nothing is compiled with global
// -mavx2, so the binaries run on any x86-64 (and non-x86) machine. Tests force the scalar
// path to check both implementations against the same references.
#pragma once

namespace moeserve::kernels {

enum class Isa { kScalar, kAvx2 };

// The best instruction set this CPU supports (computed once).
Isa detected_isa();
// The instruction set the kernels use now: detected_isa() unless overridden.
Isa active_isa();
// Forces `isa` for all later kernel calls (clamped to what the CPU supports). Not meant to be
// changed while other threads run kernels.
void set_isa_for_testing(Isa isa);
const char* isa_name(Isa isa);

}  // namespace moeserve::kernels
