// The CPU kernel library in one include: conversions, instruction-set selection, the
// thread pool, matmul over F32/BF16/FP8-block weights, element-wise ops and RoPE/YaRN.
// Everything lives in namespace moeserve::kernels; see each header for its contract.
#pragma once

#include "kernels/cpu/convert.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/probe.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
