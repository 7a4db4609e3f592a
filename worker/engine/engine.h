// Engine: the forward pass of a DeepSeek-V2/V3-family model over a batch of sequences.
//
// Each sequence brings its KV state (SequenceKv, in the engine's paged KvCache) and its
// new tokens: a prefill chunk or one decode token. forward() runs every decoder layer
// (RMSNorm -> MLA attention -> residual -> RMSNorm -> dense MLP or DeepSeekMoE ->
// residual) over all new tokens of the batch at once, so each weight matrix is read once
// per step whatever the batch size, then the final norm and lm_head for the rows whose
// logits are wanted. It advances each sequence's length by its token count. On request
// it also returns the final hidden states (normed) of a sequence's new tokens.
//
// MoE layers route (moe.h) and hand the assignment to an ExpertDispatcher: by default
// the LocalExpertDispatcher over this process's experts; the expert-parallel path swaps
// in its own with set_dispatcher(). With EngineOptions::record_routing the chosen
// experts of every MoE layer are returned per token (tests, metrics, load statistics).
//
// Ownership: the engine shares the loaded model (weights point into its mappings) and
// owns the KV cache, the thread pool and all scratch. Not thread-safe: one scheduler
// thread drives it (the pool's workers run inside forward()).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
#include "worker/engine/attention.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/moe.h"
#include "worker/model/weights.h"

namespace moeserve::engine {

struct EngineOptions {
  int threads = 0;                  // <= 0: one per hardware thread
  int64_t kv_cache_tokens = 16384;  // capacity of the KV cache, rounded up to blocks
  AttentionPath attention_path = AttentionPath::kAuto;
  bool record_routing = false;
};

struct SequenceInput {
  SequenceKv* kv = nullptr;         // advanced by tokens.size() on success
  std::span<const int32_t> tokens;  // at least one
  bool all_logits = false;          // logits for every new token, else the last only
  bool hidden_states = false;       // also the final hidden state of every new token
};

struct LayerRouting {
  int64_t layer = 0;
  Routing routing;  // over the flat batch: sequence 0's tokens, then sequence 1's, ...
};

struct ForwardOutput {
  int64_t vocab_size = 0;
  std::vector<float> logits;       // [rows, vocab_size]
  std::vector<int64_t> first_row;  // per sequence: its first row in `logits`
  std::vector<int64_t> num_rows;   // per sequence: 1, or its token count with all_logits
  std::vector<LayerRouting> routing;
  // Final hidden states (after the model's norm, the lm_head's input; what an MTP drafter
  // consumes): [sum of the asking sequences' token counts, hidden_size]. Per sequence its
  // first row, or -1 when it did not ask (SequenceInput::hidden_states).
  int64_t hidden_size = 0;
  std::vector<float> hidden;
  std::vector<int64_t> hidden_first_row;

  // Hidden state of token `i` of sequence `seq`'s new tokens; the sequence asked.
  const float* hidden_row(size_t seq, int64_t i) const {
    return hidden.data() + (hidden_first_row[seq] + i) * hidden_size;
  }

  // Logits of row `i` of sequence `seq` (default: its last row).
  const float* row(size_t seq, int64_t i = -1) const {
    const int64_t r = first_row[seq] + (i < 0 ? num_rows[seq] - 1 : i);
    return logits.data() + r * vocab_size;
  }
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> create(std::shared_ptr<const model::LoadedModel> model,
                                                  const EngineOptions& options);

  // invalid_argument for an empty sequence, a token outside the vocabulary or a sequence
  // given twice; resource_exhausted when the KV cache cannot hold the new tokens (then
  // nothing is changed).
  Status forward(const std::vector<SequenceInput>& batch, ForwardOutput* output);

  // Replaces the local expert execution (expert parallelism).
  void set_dispatcher(std::unique_ptr<ExpertDispatcher> dispatcher);

  KvCache& kv_cache() { return kv_cache_; }
  const model::ModelConfig& config() const { return model_->config; }
  const model::LoadedModel& model() const { return *model_; }
  kernels::ThreadPool& pool() { return *pool_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Layer {
    const float* input_norm = nullptr;
    const float* post_attention_norm = nullptr;
    MlaWeights attention;
    bool is_moe = false;
    MlpWeights mlp{};  // dense MLP, or the shared experts of an MoE layer
    bool has_mlp = false;
    kernels::WeightView router{};
    const float* router_bias = nullptr;
  };

  Engine(std::shared_ptr<const model::LoadedModel> model, const EngineOptions& options,
         KvCache kv_cache);
  Status check_batch(const std::vector<SequenceInput>& batch) const;
  Status run_layer(int64_t index, const std::vector<AttentionSpan>& spans, int64_t tokens,
                   ForwardOutput* output);

  std::shared_ptr<const model::LoadedModel> model_;
  EngineOptions options_;
  std::unique_ptr<kernels::ThreadPool> pool_;
  kernels::RopeTable rope_;
  MlaShape mla_shape_;
  RoutingConfig routing_config_;
  std::vector<Layer> layers_;
  kernels::WeightView embed_{};
  kernels::WeightView lm_head_{};
  KvCache kv_cache_;
  std::unique_ptr<ExpertDispatcher> dispatcher_;
  MlaAttention attention_;
  MlpRunner mlp_runner_;
  // Scratch, [tokens, hidden] unless noted.
  std::vector<float> x_, normed_, delta_, shared_;
  std::vector<float> router_logits_;  // [tokens, n_routed_experts]
};

}  // namespace moeserve::engine
