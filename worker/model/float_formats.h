// Element conversions for checkpoint files: bfloat16 and FP8 E4M3 ("e4m3fn": bias 7,
// no infinities, 0x7f/0xff NaN, largest finite 448), as stored by Hugging Face
// checkpoints. worker/model reads norms and writes generated checkpoints with these;
// it does not depend on kernels/ (which decodes the same formats in its matmuls).
// Pure functions, thread-safe.
#pragma once

#include <cstdint>

namespace moeserve::model {

// Exact: bfloat16 is the upper half of a float.
float bf16_to_float(uint16_t bits);
// Round to nearest, ties to even.
uint16_t float_to_bf16(float value);

// Exact for all codes; subnormals are m * 2^-9.
float fp8_e4m3_to_float(uint8_t code);
// Round to nearest, ties to even; saturates to +-448; NaN gives 0x7f | sign.
uint8_t float_to_fp8_e4m3(float value);

}  // namespace moeserve::model
