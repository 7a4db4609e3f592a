// Element types of tensors stored in safetensors files, with their on-disk names
// ("F32", "BF16", "F8_E4M3", ...) and sizes in bytes. Every dtype of the safetensors
// format is known here so that any file parses; which ones a model accepts is decided
// by the weight binder (worker/model/weights.h).
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace moeserve::model {

enum class DType {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// Bytes per element (1 for kBool and the 8-bit types).
size_t dtype_size(DType dtype);
// The safetensors name: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
// Inverse of dtype_name; unknown names are an invalid_argument error naming the text.
StatusOr<DType> parse_dtype(std::string_view name);

}  // namespace moeserve::model
