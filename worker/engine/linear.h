// Adapters from the model's bound weights (worker/model/weights.h) to the kernels'
// non-owning WeightView. Views point into the checkpoint mapping; nothing is copied.
#pragma once

#include "kernels/cpu/matmul.h"
#include "worker/model/weights.h"

namespace moeserve::engine {

// Precondition: linear.dtype is F32, BF16 or F8_E4M3 (bind_weights guarantees it).
kernels::WeightView to_view(const model::Linear& linear);

}  // namespace moeserve::engine
