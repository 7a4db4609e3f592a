// Scalar conversions between float32 and the narrow weight formats of Hugging Face
// checkpoints: bfloat16 and FP8 E4M3 ("e4m3fn": bias 7, no infinities, 0x7f/0xff are NaN,
// largest finite value 448). Pure functions, thread-safe. The matmul kernels decode the
// same formats inside their inner loops; these are the element-wise definitions, and the
// only ones: worker/model decodes norm vectors with them and the tiny-model maker
// (tools/fixtures) encodes its checkpoints with them.
#pragma once

#include <cstdint>

namespace moeserve::kernels {

// Exact: bfloat16 is the upper half of a float32.
float bf16_to_f32(uint16_t v);
// Round to nearest, ties to even; NaN stays a (quiet) NaN with its sign.
uint16_t f32_to_bf16(float v);

// Exact for all 256 codes: subnormals (exponent field 0) are m * 2^-9, 0x7f/0xff are NaN.
float fp8_e4m3_to_f32(uint8_t v);
// Round to nearest, ties to even, saturating: |v| >= 448 (and +-inf) gives +-448,
// NaN gives 0x7f (0xff when the sign bit is set).
uint8_t f32_to_fp8_e4m3(float v);

}  // namespace moeserve::kernels
