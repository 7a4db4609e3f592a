#include "worker/engine/linear.h"

namespace moeserve::engine {

kernels::WeightView to_view(const model::Linear& linear) {
  kernels::WeightType type = kernels::WeightType::kF32;
  if (linear.dtype == model::DType::kBF16) type = kernels::WeightType::kBF16;
  if (linear.dtype == model::DType::kF8E4M3) type = kernels::WeightType::kFP8E4M3;
  return kernels::WeightView{type, linear.data, linear.scale_inv, linear.rows, linear.cols};
}

}  // namespace moeserve::engine
