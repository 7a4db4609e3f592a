#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_impl.h"
#include "kernels/cpu/thread_pool.h"

namespace moeserve::kernels {
namespace {

// Rows are handed to threads in multiples of this (the AVX2 kernel's row tile; a divisor
// of the FP8 block so tiles never straddle two scale rows).
constexpr int64_t kRowGroup = 4;
// Below this many multiply-adds the hand-off to other threads costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 16;
// Row chunks per thread that threads claim as they finish. Most of a decode step's matrices
// are small (0.1-1 MiB), and every chunk restarts a weight stream: with 4 per thread
// FP8 512x1024 at one token read 36 GB/s on 2 threads, with 2 41, with 1 45 (back to back
// in one process); in bench-decode (2 threads, alternated) 2 per thread beat 4 in prefill,
// single stream and batch 16 by 0-18 % in six of six rounds, and matched 1.
constexpr int kMatmulChunksPerThread = 2;

int64_t scale_cols(const WeightView& w) { return (w.cols + kFp8BlockSize - 1) / kFp8BlockSize; }

// The value of E4M3 code `v` by the generic vector kernels' bit placement (matmul_avx2.cpp):
// sign-extended and shifted left 20, masked to the sign and bits 20-26, it is a float32
// with E4M3's exponent and mantissa fields, exactly value * 2^-120 for every code but NaN
// (which reads as 480; matmul.h excludes NaN weights). No table look-up, so the compiler
// vectorises the loops it is in for whatever the target has (SSE2, NEON): the scalar level
// read 2.7 GB/s of FP8 weights with a 256-entry table, 4.3 with this (512x1024, one token,
// one thread, from DRAM).
inline float fp8_bits_value(uint8_t v) {
  const auto wide = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(v)));
  return std::bit_cast<float>((wide << 20) & 0x87f00000u) * 0x1p120f;
}

using RowsFn = void (*)(const WeightView&, const float*, int64_t, float*, int64_t, int64_t);

RowsFn rows_fn(Isa isa) {
#if MOESERVE_X86_SIMD
  if (isa == Isa::kAvx512Bf16) return internal::matmul_rows_avx512_bf16;
  if (isa == Isa::kAvx512Vbmi) return internal::matmul_rows_avx512_vbmi;
  if (isa == Isa::kAvx512) return internal::matmul_rows_avx512;
  if (isa == Isa::kAvx2) return internal::matmul_rows_avx2;
#endif
  (void)isa;
  return internal::matmul_rows_scalar;
}

}  // namespace

namespace internal {

float weight_element(const WeightView& w, int64_t row, int64_t col) {
  const int64_t index = row * w.cols + col;
  switch (w.type) {
    case WeightType::kF32: return static_cast<const float*>(w.data)[index];
    case WeightType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[index]);
    case WeightType::kFP8E4M3:
      return fp8_e4m3_to_f32(static_cast<const uint8_t*>(w.data)[index]) *
             w.scale_inv[(row / kFp8BlockSize) * scale_cols(w) + col / kFp8BlockSize];
  }
  return 0.0f;
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  // Eight independent partial sums: the same association as the vector kernels use, and
  // no loop-carried dependency on a single accumulator.
  float partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) partial[0] += a[i] * b[i];
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

const Fp8Bf16Tables& fp8_bf16_tables() {
  static const Fp8Bf16Tables tables = [] {
    Fp8Bf16Tables t{};
    for (int code = 0; code < 128; ++code) {
      const uint16_t bf16 = f32_to_bf16(fp8_e4m3_to_f32(static_cast<uint8_t>(code)));
      t.hi[code] = static_cast<uint8_t>(bf16 >> 8);
      t.lo[code] = static_cast<uint8_t>(bf16 & 0xff);
    }
    return t;
  }();
  return tables;
}

float* panel_scratch(int64_t floats) {
  // 64-byte aligned: a 512-bit load from a panel row must not straddle two cache lines.
  constexpr int64_t kAlignFloats = 16;
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < floats + kAlignFloats) {
    buffer.resize(static_cast<size_t>(floats + kAlignFloats));
  }
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  const uintptr_t aligned = (address + 63) & ~uintptr_t{63};
  return buffer.data() + (aligned - address) / sizeof(float);
}

void matmul_rows_scalar(const WeightView& w, const float* x, int64_t tokens, float* y,
                        int64_t row_begin, int64_t row_end) {
  float* row_values = panel_scratch(w.cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    dequantize_row(w, r, row_values);
    for (int64_t t = 0; t < tokens; ++t) {
      y[t * w.rows + r] = dot_scalar(row_values, x + t * w.cols, w.cols);
    }
  }
}

}  // namespace internal

int64_t weight_bytes(const WeightView& w) {
  const int64_t element = w.type == WeightType::kF32 ? 4 : w.type == WeightType::kBF16 ? 2 : 1;
  return w.rows * w.cols * element;
}

void dequantize_row(const WeightView& w, int64_t row, float* out) {
  const int64_t base = row * w.cols;
  switch (w.type) {
    case WeightType::kF32: {
      const float* data = static_cast<const float*>(w.data) + base;
      std::copy(data, data + w.cols, out);
      return;
    }
    case WeightType::kBF16: {
      const uint16_t* data = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t c = 0; c < w.cols; ++c) {
        out[c] = std::bit_cast<float>(static_cast<uint32_t>(data[c]) << 16);
      }
      return;
    }
    case WeightType::kFP8E4M3: {
      const uint8_t* data = static_cast<const uint8_t*>(w.data) + base;
      const float* scales = w.scale_inv + (row / kFp8BlockSize) * scale_cols(w);
      for (int64_t c0 = 0; c0 < w.cols; c0 += kFp8BlockSize) {
        const int64_t c1 = std::min(c0 + kFp8BlockSize, w.cols);
        const float scale = scales[c0 / kFp8BlockSize];
        for (int64_t c = c0; c < c1; ++c) out[c] = fp8_bits_value(data[c]) * scale;
      }
      return;
    }
  }
}

void matmul_reference(const WeightView& w, const float* x, int64_t tokens, float* y) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        sum += static_cast<double>(internal::weight_element(w, r, c)) * x[t * w.cols + c];
      }
      y[t * w.rows + r] = static_cast<float>(sum);
    }
  }
}

namespace {

int64_t task_work(const MatmulTask& t) {
  return t.w.rows > 0 && t.w.cols > 0 && t.tokens > 0 ? t.w.rows * t.w.cols * t.tokens : 0;
}

// A position in a batch's row groups: group `group` of task `task`.
struct GroupCursor {
  size_t task;
  int64_t group;
};

}  // namespace

void matmul_all(std::span<const MatmulTask> tasks, ThreadPool* pool) {
  int64_t total = 0;
  for (const MatmulTask& t : tasks) {
    if (t.w.rows > 0 && t.tokens > 0 && t.w.cols <= 0) std::fill_n(t.y, t.tokens * t.w.rows, 0.0f);
    total += task_work(t);
  }
  if (total == 0) return;
  const RowsFn rows = rows_fn(active_isa());
  const auto groups_of = [](const MatmulTask& t) { return (t.w.rows + kRowGroup - 1) / kRowGroup; };
  // Runs the groups from `begin` up to (not including) `end`.
  const auto run_groups = [&](GroupCursor begin, GroupCursor end) {
    for (size_t i = begin.task; i <= end.task && i < tasks.size(); ++i) {
      const MatmulTask& t = tasks[i];
      if (task_work(t) == 0) continue;
      const int64_t g0 = i == begin.task ? begin.group : 0;
      const int64_t g1 = i == end.task ? end.group : groups_of(t);
      if (g0 < g1)
        rows(t.w, t.x, t.tokens, t.y, g0 * kRowGroup, std::min(g1 * kRowGroup, t.w.rows));
    }
  };
  if (pool == nullptr || pool->size() <= 1 || total < kMinParallelWork) {
    run_groups({0, 0}, {tasks.size(), 0});
    return;
  }
  // Chunk c starts at the first group whose work starts at or after g(c / chunks) of the
  // total, g(u) = 1 - (1 - u)^2: chunks shrink linearly, so the last ones claimed are small
  // and a thread that started late or ran slower leaves the others a short wait.
  const int chunks = pool->size() * kMatmulChunksPerThread;
  std::vector<GroupCursor> starts;
  starts.reserve(chunks + 1);
  size_t task = 0;
  int64_t before = 0;  // work of the tasks before `task`
  for (int c = 0; c < chunks; ++c) {
    const int64_t target = total - total * (chunks - c) / chunks * (chunks - c) / chunks;
    while (task < tasks.size() && before + task_work(tasks[task]) <= target) {
      before += task_work(tasks[task]);
      ++task;
    }
    if (task == tasks.size()) {
      starts.push_back({task, 0});
      continue;
    }
    const MatmulTask& t = tasks[task];
    const int64_t group_work = kRowGroup * t.w.cols * t.tokens;
    starts.push_back(
        {task, std::min(groups_of(t), (target - before + group_work - 1) / group_work)});
  }
  starts.push_back({tasks.size(), 0});
  pool->parallel_for_balanced(
      chunks,
      [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) run_groups(starts[c], starts[c + 1]);
      },
      kMatmulChunksPerThread);
}

void matmul(const WeightView& w, const float* x, int64_t tokens, float* y, ThreadPool* pool) {
  const MatmulTask task{w, x, tokens, y};
  matmul_all({&task, 1}, pool);
}

}  // namespace moeserve::kernels
