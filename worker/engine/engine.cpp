#include "worker/engine/engine.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "kernels/cpu/ops.h"
#include "worker/engine/linear.h"

namespace moeserve::engine {
namespace {

// Positions with precomputed cos/sin; later positions are computed on the fly.
constexpr int64_t kMaxRopeTablePositions = 32768;

kernels::RopeConfig rope_config(const model::ModelConfig& c) {
  kernels::RopeConfig r{.dim = c.qk_rope_head_dim, .theta = c.rope_theta};
  if (c.rope_scaling.enabled) {
    r.factor = c.rope_scaling.factor;
    r.original_max_position = c.rope_scaling.original_max_position_embeddings;
    r.beta_fast = c.rope_scaling.beta_fast;
    r.beta_slow = c.rope_scaling.beta_slow;
    r.mscale = c.rope_scaling.mscale;
    r.mscale_all_dim = c.rope_scaling.mscale_all_dim;
  }
  return r;
}

MlpWeights mlp_views(const model::Mlp& mlp) {
  return MlpWeights{to_view(mlp.gate_proj), to_view(mlp.up_proj), to_view(mlp.down_proj)};
}

}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::create(std::shared_ptr<const model::LoadedModel> model,
                                                 const EngineOptions& options) {
  if (model == nullptr) return invalid_argument_error("engine: no model");
  const model::ModelConfig& c = model->config;
  if (options.kv_cache_tokens <= 0) {
    return invalid_argument_error("engine: kv_cache_tokens must be positive");
  }
  MOESERVE_ASSIGN_OR_RETURN(
      KvCache cache, KvCache::create(KvCacheConfig{
                         .num_layers = c.num_hidden_layers,
                         .latent_dim = c.kv_lora_rank,
                         .rope_dim = c.qk_rope_head_dim,
                         .num_blocks = (options.kv_cache_tokens + kBlockSize - 1) / kBlockSize}));
  return std::unique_ptr<Engine>(new Engine(std::move(model), options, std::move(cache)));
}

Engine::Engine(std::shared_ptr<const model::LoadedModel> model, const EngineOptions& options,
               KvCache kv_cache)
    : model_(std::move(model)),
      options_(options),
      pool_(std::make_unique<kernels::ThreadPool>(options.threads)),
      rope_(rope_config(model_->config), std::min(options.kv_cache_tokens, kMaxRopeTablePositions)),
      mla_shape_(mla_shape(model_->config, rope_)),
      routing_config_(routing_config(model_->config)),
      kv_cache_(std::move(kv_cache)),
      attention_(mla_shape_, &rope_, pool_.get()) {
  const model::ModelWeights& w = model_->weights;
  std::vector<std::vector<MlpWeights>> experts(w.layers.size());
  for (const model::DecoderLayer& src : w.layers) {
    Layer layer;
    layer.input_norm = src.input_layernorm.data();
    layer.post_attention_norm = src.post_attention_layernorm.data();
    layer.attention = bind_mla(src.self_attn, mla_shape_);
    layer.is_moe = src.is_moe;
    if (src.is_moe) {
      layer.router = to_view(src.moe.gate);
      if (!src.moe.e_score_correction_bias.empty()) {
        layer.router_bias = src.moe.e_score_correction_bias.data();
      }
      layer.has_mlp = src.moe.has_shared_experts();
      if (layer.has_mlp) layer.mlp = mlp_views(src.moe.shared_experts);
      for (const model::Mlp& e : src.moe.experts) experts[src.index].push_back(mlp_views(e));
    } else {
      layer.has_mlp = true;
      layer.mlp = mlp_views(src.mlp);
    }
    layers_.push_back(std::move(layer));
  }
  embed_ = to_view(w.embed_tokens);
  lm_head_ = to_view(w.lm_head);
  dispatcher_ = std::make_unique<LocalExpertDispatcher>(std::move(experts),
                                                        model_->config.hidden_size, pool_.get());
}

void Engine::set_dispatcher(std::unique_ptr<ExpertDispatcher> dispatcher) {
  dispatcher_ = std::move(dispatcher);
}

Status Engine::check_batch(const std::vector<SequenceInput>& batch) const {
  std::set<const SequenceKv*> seen;
  int64_t blocks_needed = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    const std::string where = "batch sequence " + std::to_string(s);
    if (in.kv == nullptr) return invalid_argument_error(where + ": no KV state");
    if (!seen.insert(in.kv).second) return invalid_argument_error(where + ": given twice");
    if (in.tokens.empty()) return invalid_argument_error(where + ": no tokens");
    for (int32_t token : in.tokens) {
      if (token < 0 || token >= model_->config.vocab_size) {
        return invalid_argument_error(where + ": token " + std::to_string(token) +
                                      " outside the vocabulary [0, " +
                                      std::to_string(model_->config.vocab_size) + ")");
      }
    }
    const int64_t tokens = in.kv->length + static_cast<int64_t>(in.tokens.size());
    blocks_needed += std::max<int64_t>(
        0, (tokens + kBlockSize - 1) / kBlockSize - static_cast<int64_t>(in.kv->blocks.size()));
  }
  if (blocks_needed > kv_cache_.num_free_blocks()) {
    return resource_exhausted_error("KV cache: the batch needs " + std::to_string(blocks_needed) +
                                    " more blocks of " + std::to_string(kBlockSize) +
                                    " tokens but only " +
                                    std::to_string(kv_cache_.num_free_blocks()) + " of " +
                                    std::to_string(kv_cache_.num_blocks()) + " are free");
  }
  return ok_status();
}

Status Engine::run_layer(int64_t index, const std::vector<AttentionSpan>& spans, int64_t tokens,
                         ForwardOutput* output) {
  const Layer& layer = layers_[index];
  const model::ModelConfig& c = model_->config;
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  for (int64_t t = 0; t < tokens; ++t) {
    kernels::rms_norm(x_.data() + t * hidden, layer.input_norm, hidden, eps,
                      normed_.data() + t * hidden);
  }
  attention_.forward(layer.attention, index, normed_.data(), tokens, spans, kv_cache_,
                     options_.attention_path, delta_.data());
  kernels::add(x_.data(), delta_.data(), tokens * hidden);

  for (int64_t t = 0; t < tokens; ++t) {
    kernels::rms_norm(x_.data() + t * hidden, layer.post_attention_norm, hidden, eps,
                      normed_.data() + t * hidden);
  }
  if (layer.is_moe) {
    router_logits_.resize(tokens * c.n_routed_experts);
    kernels::matmul(layer.router, normed_.data(), tokens, router_logits_.data(), pool_.get());
    Routing routing = route(routing_config_, router_logits_.data(), layer.router_bias, tokens);
    MOESERVE_RETURN_IF_ERROR(dispatcher_->dispatch(index, normed_.data(), routing, delta_.data()));
    kernels::add(x_.data(), delta_.data(), tokens * hidden);
    if (output != nullptr && options_.record_routing) {
      output->routing.push_back(LayerRouting{index, std::move(routing)});
    }
  }
  if (layer.has_mlp) {
    mlp_runner_.run(layer.mlp, normed_.data(), tokens, delta_.data(), pool_.get());
    kernels::add(x_.data(), delta_.data(), tokens * hidden);
  }
  return ok_status();
}

Status Engine::forward(const std::vector<SequenceInput>& batch, ForwardOutput* output) {
  MOESERVE_RETURN_IF_ERROR(check_batch(batch));
  const model::ModelConfig& c = model_->config;
  const int64_t hidden = c.hidden_size;

  std::vector<AttentionSpan> spans;
  int64_t tokens = 0;
  for (const SequenceInput& in : batch) {
    const int64_t count = static_cast<int64_t>(in.tokens.size());
    MOESERVE_RETURN_IF_ERROR(kv_cache_.reserve(*in.kv, in.kv->length + count));
    spans.push_back(AttentionSpan{in.kv, tokens, count, in.kv->length});
    tokens += count;
  }

  x_.resize(tokens * hidden);
  normed_.resize(tokens * hidden);
  delta_.resize(tokens * hidden);
  for (size_t s = 0; s < batch.size(); ++s) {
    for (int64_t i = 0; i < spans[s].count; ++i) {
      kernels::dequantize_row(embed_, batch[s].tokens[i],
                              x_.data() + (spans[s].first + i) * hidden);
    }
  }

  if (output != nullptr) output->routing.clear();
  for (int64_t layer = 0; layer < static_cast<int64_t>(layers_.size()); ++layer) {
    MOESERVE_RETURN_IF_ERROR(run_layer(layer, spans, tokens, output));
  }
  for (size_t s = 0; s < batch.size(); ++s) batch[s].kv->length += spans[s].count;
  if (output == nullptr) return ok_status();

  // Final norm and lm_head over the rows whose logits are wanted.
  output->vocab_size = c.vocab_size;
  output->first_row.clear();
  output->num_rows.clear();
  int64_t rows = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const int64_t n = batch[s].all_logits ? spans[s].count : 1;
    const int64_t first_token = spans[s].first + spans[s].count - n;
    for (int64_t i = 0; i < n; ++i) {
      kernels::rms_norm(x_.data() + (first_token + i) * hidden, model_->weights.norm.data(), hidden,
                        static_cast<float>(c.rms_norm_eps), normed_.data() + (rows + i) * hidden);
    }
    output->first_row.push_back(rows);
    output->num_rows.push_back(n);
    rows += n;
  }
  output->logits.resize(rows * c.vocab_size);
  kernels::matmul(lm_head_, normed_.data(), rows, output->logits.data(), pool_.get());

  output->hidden_size = hidden;
  output->hidden_first_row.assign(batch.size(), -1);
  int64_t hidden_rows = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    if (!batch[s].hidden_states) continue;
    output->hidden_first_row[s] = hidden_rows;
    hidden_rows += spans[s].count;
  }
  output->hidden.resize(hidden_rows * hidden);
  for (size_t s = 0; s < batch.size(); ++s) {
    if (output->hidden_first_row[s] < 0) continue;
    for (int64_t i = 0; i < spans[s].count; ++i) {
      kernels::rms_norm(x_.data() + (spans[s].first + i) * hidden, model_->weights.norm.data(),
                        hidden, static_cast<float>(c.rms_norm_eps),
                        output->hidden.data() + (output->hidden_first_row[s] + i) * hidden);
    }
  }
  return ok_status();
}

}  // namespace moeserve::engine
