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
// Multi-token prediction: when the model was loaded with its MTP modules
// (BindOptions::load_mtp), mtp_forward() runs the first one as DeepSeek-V3 defines it
// (the one DeepSeek-V3 ships; chained drafts reuse it, as vLLM does). At MTP position j
// it takes the main model's final hidden state h_j and the next token t_{j+1}:
//   x = eh_proj([enorm(embed(t_{j+1})) ; hnorm(h_j)])   (embedding half first)
//   h'_j = block(x)   (a decoder layer with its own KV, in mtp_kv_cache())
//   logits = shared_head.head(shared_head.norm(h'_j))   (predicting t_{j+2})
// The block runs through the same layer code as the main layers; its MoE goes through
// the same dispatcher with its checkpoint layer index (num_hidden_layers), so expert
// parallelism shards its experts like the main ones. The MTP KV cache has one layer and
// the main cache's capacity.
//
// Ownership: the engine shares the loaded model (weights point into its mappings) and
// owns the KV caches, the thread pool and all scratch. Not thread-safe: one scheduler
// thread drives it (the pool's workers run inside forward()).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
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

// One sequence of an MTP forward: its new MTP positions j = kv->length + i take
// tokens[i] (= t_{j+1}) and the hidden state hidden[i] (h_j: the main model's final
// hidden state, or the MTP block's own output when chaining drafts).
struct MtpInput {
  SequenceKv* kv = nullptr;         // in mtp_kv_cache(); advanced by tokens.size()
  std::span<const int32_t> tokens;  // at least one
  const float* hidden = nullptr;    // [tokens.size(), hidden_size]
  bool all_logits = false;          // logits for every new position, else the last only
  bool logits = true;               // false: no logits rows at all (num_rows 0)
  bool hidden_states = false;       // also h'_j, the block's output, of every new position
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
  // first row, or -1 when it did not ask (SequenceInput::hidden_states). From
  // mtp_forward(): the MTP block's output h'_j, before shared_head.norm (the hidden state
  // a chained draft feeds back).
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

  // The MTP forward (see above) over a batch, with forward()'s errors (the KV cache is
  // the MTP one), and failed_precondition when the model has no MTP module loaded.
  // Routing is recorded under the block's layer index (num_hidden_layers).
  Status mtp_forward(const std::vector<MtpInput>& batch, ForwardOutput* output);
  bool has_mtp() const { return mtp_.has_value(); }
  // Precondition: has_mtp().
  KvCache& mtp_kv_cache() { return mtp_->kv_cache; }

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

  // The first MTP module: its projections, norms and head, its block, its KV cache.
  struct Mtp {
    kernels::WeightView embed{};
    const float* enorm = nullptr;
    const float* hnorm = nullptr;
    kernels::WeightView eh_proj{};
    const float* shared_head_norm = nullptr;
    kernels::WeightView head{};
    Layer block;
    int64_t layer_index = 0;  // in the checkpoint (and the dispatcher): num_hidden_layers
    KvCache kv_cache;
  };

  Engine(std::shared_ptr<const model::LoadedModel> model, const EngineOptions& options,
         KvCache kv_cache, std::optional<KvCache> mtp_kv_cache);
  Layer bind_layer(const model::DecoderLayer& src) const;
  Status check_batch(const std::vector<SequenceInput>& batch, const KvCache& cache) const;
  // Reserves the batch's new positions in `cache`; fills spans_ and returns the number of
  // new tokens, with x_/normed_/delta_ sized for them.
  StatusOr<int64_t> begin_batch(const std::vector<SequenceInput>& batch, KvCache& cache);
  // One decoder layer over x_: attention writes layer `kv_layer` of `cache`, MoE routing
  // is dispatched (and recorded) as layer `layer_index`.
  Status run_layer(const Layer& layer, int64_t layer_index, KvCache& cache, int64_t kv_layer,
                   int64_t tokens, ForwardOutput* output);
  // Advances every sequence's KV length, then fills `output` from x_: logits of the wanted
  // rows through `norm` and `head` (none for a sequence whose `no_logits` entry is set;
  // empty: every sequence has some); hidden states through `hidden_norm` (raw x_ when
  // null).
  void finish_batch(const std::vector<SequenceInput>& batch, const float* norm,
                    const kernels::WeightView& head, const float* hidden_norm,
                    const std::vector<bool>& no_logits, ForwardOutput* output);

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
  std::optional<Mtp> mtp_;
  std::unique_ptr<ExpertDispatcher> dispatcher_;
  MlaAttention attention_;
  MlpRunner mlp_runner_;
  // Scratch, [tokens, hidden] unless noted.
  std::vector<AttentionSpan> spans_;  // of the batch being run
  std::vector<float> x_, normed_, delta_, shared_;
  std::vector<float> mtp_in_;                     // [tokens, 2 * hidden]: eh_proj's input
  std::vector<float> router_logits_;              // [tokens, n_routed_experts]
  std::vector<kernels::MatmulTask> projections_;  // run_layer's router + shared gate/up
};

}  // namespace moeserve::engine
