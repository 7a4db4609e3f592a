// Multi-head latent attention (MLA, DeepSeek-V2/V3) over the paged KV cache.
//
// Per token: q = q_b(rmsnorm(q_a x)) (or q_proj x without q_lora_rank), split per head
// into [nope | rope]; kv_a x = [latent | k_rope]; the cache stores rmsnorm(latent) and
// RoPE(k_rope) (kv_cache.h). Scores use softmax_scale = (nope + rope)^-0.5 times the YaRN
// multiplier, causal within each sequence.
//
// Two exact evaluation orders of the same attention:
//   - expanded (prefill): K_nope and V of every cached position are re-derived with
//     kv_b_proj (one matmul over the sequence), then ordinary attention per head;
//   - absorbed (decode): the k_nope rows of kv_b are absorbed into the query
//     (q_lat = W_uk^T q_nope) and the v rows into the output (o = W_uv o_lat), so
//     attention runs over the cached latent directly and nothing per position is
//     re-derived (DeepSeek-V2 paper, section 2.1.2).
// kAuto picks, per sequence, whichever needs fewer multiply-adds.
//
// The absorbed path uses per-head views of kv_b (MlaWeights::uk_t, uv): views into the
// checkpoint where the layout allows, else small copies owned by MlaWeights: a transposed
// copy of each head's k_nope block in the stored dtype (FP8 keeps its 128x128 scales,
// transposed), or float32 when an FP8 head's rows straddle a 128-row scale block edge
// (neither DeepSeek-V3's 128+128 nor the generated models' head layouts do).
//
// Not thread-safe: an MlaAttention owns scratch buffers; work inside forward() runs on
// the thread pool.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "worker/engine/kv_cache.h"
#include "worker/model/weights.h"

namespace moeserve::kernels {
class ThreadPool;
}

namespace moeserve::engine {

enum class AttentionPath { kAuto, kAbsorbed, kExpanded };

struct MlaShape {
  int64_t heads = 0;
  int64_t hidden = 0;
  int64_t q_lora_rank = 0;  // 0: q_proj
  int64_t kv_lora_rank = 0;
  int64_t nope = 0;
  int64_t rope = 0;
  int64_t v = 0;
  float eps = 1e-6f;
  float softmax_scale = 0.0f;
};

MlaShape mla_shape(const model::ModelConfig& config, const kernels::RopeTable& rope);

struct MlaWeights {
  kernels::WeightView q_a{}, q_b{}, q{};
  const float* q_a_norm = nullptr;
  kernels::WeightView kv_a{};
  const float* kv_a_norm = nullptr;
  kernels::WeightView kv_b{};
  kernels::WeightView o{};
  std::vector<kernels::WeightView> uk_t;      // per head [kv_lora_rank, nope]
  std::vector<kernels::WeightView> uv;        // per head [v, kv_lora_rank]
  std::vector<std::vector<uint8_t>> storage;  // copies the views above may point into
};

MlaWeights bind_mla(const model::Attention& attention, const MlaShape& shape);

// One sequence's tokens in the flat batch: tokens [first, first + count) at positions
// [start_position, start_position + count). The cache must have room for them.
struct AttentionSpan {
  SequenceKv* kv = nullptr;
  int64_t first = 0;
  int64_t count = 0;
  int64_t start_position = 0;
};

class MlaAttention {
 public:
  MlaAttention(const MlaShape& shape, const kernels::RopeTable* rope, kernels::ThreadPool* pool);

  // x: [tokens, hidden] (after input_layernorm); out: [tokens, hidden]. Writes the cache
  // entries of `layer` for every span's new positions, then attends.
  void forward(const MlaWeights& w, int64_t layer, const float* x, int64_t tokens,
               const std::vector<AttentionSpan>& spans, KvCache& cache, AttentionPath path,
               float* out);

 private:
  // q (or q_a) and kv_a of x, in one pool dispatch: they read the same input.
  void project_inputs(const MlaWeights& w, const float* x, int64_t tokens);
  // q from q_a (norm, q_b) when the model has a q LoRA.
  void project_q(const MlaWeights& w, int64_t tokens);
  // The new positions' cache entries from kv_a, and rope on q.
  void write_cache(const MlaWeights& w, int64_t layer, const std::vector<AttentionSpan>& spans,
                   KvCache& cache);
  bool use_absorbed(const AttentionSpan& span, AttentionPath path) const;
  void attend_expanded(const MlaWeights& w, int64_t layer, const AttentionSpan& span,
                       KvCache& cache);
  void attend_absorbed(const MlaWeights& w, int64_t layer, const std::vector<AttentionSpan>& spans,
                       KvCache& cache);

  MlaShape shape_;
  const kernels::RopeTable* rope_;
  kernels::ThreadPool* pool_;
  // Scratch.
  std::vector<float> q_a_;          // [tokens, q_lora_rank]
  std::vector<float> q_;            // [tokens, heads, nope + rope]
  std::vector<float> kv_a_;         // [tokens, kv_lora_rank + rope]
  std::vector<float> heads_out_;    // [tokens, heads, v]
  std::vector<float> latents_;      // expanded: [positions, kv_lora_rank]
  std::vector<float> kv_;           // expanded: [positions, heads, nope + v]
  std::vector<float> scores_;       // absorbed: [heads, positions]
  std::vector<float> head_in_;      // absorbed: [heads, tokens, nope]
  std::vector<float> query_;        // absorbed: [heads, tokens, kv_lora_rank + rope]
  std::vector<float> o_lat_;        // absorbed: [heads, tokens, kv_lora_rank]
  std::vector<float> head_v_;       // absorbed: [heads, tokens, v]
  std::vector<const float*> rows_;  // absorbed: each span's cache entries, spans in order;
                                    // expanded: the span's rope keys
};

}  // namespace moeserve::engine
