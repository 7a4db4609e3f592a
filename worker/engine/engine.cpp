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
  const int64_t num_blocks = (options.kv_cache_tokens + kBlockSize - 1) / kBlockSize;
  MOESERVE_ASSIGN_OR_RETURN(KvCache cache,
                            KvCache::create(KvCacheConfig{.num_layers = c.num_hidden_layers,
                                                          .latent_dim = c.kv_lora_rank,
                                                          .rope_dim = c.qk_rope_head_dim,
                                                          .num_blocks = num_blocks}));
  std::optional<KvCache> mtp_cache;
  if (!model->weights.mtp.empty()) {
    MOESERVE_ASSIGN_OR_RETURN(mtp_cache,
                              KvCache::create(KvCacheConfig{.num_layers = 1,
                                                            .latent_dim = c.kv_lora_rank,
                                                            .rope_dim = c.qk_rope_head_dim,
                                                            .num_blocks = num_blocks}));
  }
  return std::unique_ptr<Engine>(
      new Engine(std::move(model), options, std::move(cache), std::move(mtp_cache)));
}

Engine::Engine(std::shared_ptr<const model::LoadedModel> model, const EngineOptions& options,
               KvCache kv_cache, std::optional<KvCache> mtp_kv_cache)
    : model_(std::move(model)),
      options_(options),
      pool_(std::make_unique<kernels::ThreadPool>(options.threads)),
      rope_(rope_config(model_->config), std::min(options.kv_cache_tokens, kMaxRopeTablePositions)),
      mla_shape_(mla_shape(model_->config, rope_)),
      routing_config_(routing_config(model_->config)),
      kv_cache_(std::move(kv_cache)),
      attention_(mla_shape_, &rope_, pool_.get()) {
  const model::ModelWeights& w = model_->weights;
  // Indexed like the checkpoint: main layers, then the MTP blocks.
  std::vector<std::vector<MlpWeights>> experts(w.layers.size() + w.mtp.size());
  for (int64_t index : w.moe_layers()) {
    for (const model::Mlp& e : w.layer(index).moe.experts) experts[index].push_back(mlp_views(e));
  }
  for (const model::DecoderLayer& src : w.layers) layers_.push_back(bind_layer(src));
  embed_ = to_view(w.embed_tokens);
  lm_head_ = to_view(w.lm_head);
  if (mtp_kv_cache.has_value()) {
    const model::MtpLayer& m = w.mtp.front();
    mtp_.emplace(Mtp{.embed = to_view(m.embed_tokens),
                     .enorm = m.enorm.data(),
                     .hnorm = m.hnorm.data(),
                     .eh_proj = to_view(m.eh_proj),
                     .shared_head_norm = m.shared_head_norm.data(),
                     .head = to_view(m.shared_head_head),
                     .block = bind_layer(m.block),
                     .layer_index = m.block.index,
                     .kv_cache = std::move(*mtp_kv_cache)});
  }
  dispatcher_ = std::make_unique<LocalExpertDispatcher>(std::move(experts),
                                                        model_->config.hidden_size, pool_.get());
}

Engine::Layer Engine::bind_layer(const model::DecoderLayer& src) const {
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
  } else {
    layer.has_mlp = true;
    layer.mlp = mlp_views(src.mlp);
  }
  return layer;
}

void Engine::set_dispatcher(std::unique_ptr<ExpertDispatcher> dispatcher) {
  dispatcher_ = std::move(dispatcher);
}

Status Engine::check_batch(const std::vector<SequenceInput>& batch, const KvCache& cache) const {
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
  if (blocks_needed > cache.num_free_blocks()) {
    return resource_exhausted_error(
        std::string(&cache == &kv_cache_ ? "KV cache" : "MTP KV cache") + ": the batch needs " +
        std::to_string(blocks_needed) + " more blocks of " + std::to_string(kBlockSize) +
        " tokens but only " + std::to_string(cache.num_free_blocks()) + " of " +
        std::to_string(cache.num_blocks()) + " are free");
  }
  return ok_status();
}

StatusOr<int64_t> Engine::begin_batch(const std::vector<SequenceInput>& batch, KvCache& cache) {
  MOESERVE_RETURN_IF_ERROR(check_batch(batch, cache));
  spans_.clear();
  int64_t tokens = 0;
  for (const SequenceInput& in : batch) {
    const int64_t count = static_cast<int64_t>(in.tokens.size());
    MOESERVE_RETURN_IF_ERROR(cache.reserve(*in.kv, in.kv->length + count));
    spans_.push_back(AttentionSpan{in.kv, tokens, count, in.kv->length});
    tokens += count;
  }
  const int64_t hidden = model_->config.hidden_size;
  x_.resize(tokens * hidden);
  normed_.resize(tokens * hidden);
  delta_.resize(tokens * hidden);
  return tokens;
}

Status Engine::run_layer(const Layer& layer, int64_t layer_index, KvCache& cache, int64_t kv_layer,
                         int64_t tokens, ForwardOutput* output) {
  const model::ModelConfig& c = model_->config;
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  for (int64_t t = 0; t < tokens; ++t) {
    kernels::rms_norm(x_.data() + t * hidden, layer.input_norm, hidden, eps,
                      normed_.data() + t * hidden);
  }
  attention_.forward(layer.attention, kv_layer, normed_.data(), tokens, spans_, cache,
                     options_.attention_path, delta_.data());
  kernels::add(x_.data(), delta_.data(), tokens * hidden);

  for (int64_t t = 0; t < tokens; ++t) {
    kernels::rms_norm(x_.data() + t * hidden, layer.post_attention_norm, hidden, eps,
                      normed_.data() + t * hidden);
  }
  // A MoE layer's router and its shared experts' gate and up read the same input: one
  // pool dispatch for the three.
  const bool shared_with_router = layer.is_moe && layer.has_mlp;
  if (layer.is_moe) {
    router_logits_.resize(tokens * c.n_routed_experts);
    projections_.clear();
    projections_.push_back({layer.router, normed_.data(), tokens, router_logits_.data()});
    if (shared_with_router) mlp_runner_.project(layer.mlp, normed_.data(), tokens, projections_);
    kernels::matmul_all(projections_, pool_.get());
    Routing routing = route(routing_config_, router_logits_.data(), layer.router_bias, tokens);
    MOESERVE_RETURN_IF_ERROR(
        dispatcher_->dispatch(layer_index, normed_.data(), routing, delta_.data()));
    kernels::add(x_.data(), delta_.data(), tokens * hidden);
    if (output != nullptr && options_.record_routing) {
      output->routing.push_back(LayerRouting{layer_index, std::move(routing)});
    }
  }
  if (layer.has_mlp) {
    if (shared_with_router) {
      mlp_runner_.finish(layer.mlp, tokens, delta_.data(), pool_.get());
    } else {
      mlp_runner_.run(layer.mlp, normed_.data(), tokens, delta_.data(), pool_.get());
    }
    kernels::add(x_.data(), delta_.data(), tokens * hidden);
  }
  return ok_status();
}

void Engine::finish_batch(const std::vector<SequenceInput>& batch, const float* norm,
                          const kernels::WeightView& head, const float* hidden_norm,
                          const std::vector<bool>& no_logits, ForwardOutput* output) {
  for (size_t s = 0; s < batch.size(); ++s) batch[s].kv->length += spans_[s].count;
  if (output == nullptr) return;
  const model::ModelConfig& c = model_->config;
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Norm and head over the rows whose logits are wanted.
  output->vocab_size = c.vocab_size;
  output->first_row.clear();
  output->num_rows.clear();
  int64_t rows = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const bool none = !no_logits.empty() && no_logits[s];
    const int64_t n = none ? 0 : batch[s].all_logits ? spans_[s].count : 1;
    const int64_t first_token = spans_[s].first + spans_[s].count - n;
    for (int64_t i = 0; i < n; ++i) {
      kernels::rms_norm(x_.data() + (first_token + i) * hidden, norm, hidden, eps,
                        normed_.data() + (rows + i) * hidden);
    }
    output->first_row.push_back(rows);
    output->num_rows.push_back(n);
    rows += n;
  }
  output->logits.resize(rows * c.vocab_size);
  if (rows > 0) kernels::matmul(head, normed_.data(), rows, output->logits.data(), pool_.get());

  output->hidden_size = hidden;
  output->hidden_first_row.assign(batch.size(), -1);
  int64_t hidden_rows = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    if (!batch[s].hidden_states) continue;
    output->hidden_first_row[s] = hidden_rows;
    hidden_rows += spans_[s].count;
  }
  output->hidden.resize(hidden_rows * hidden);
  for (size_t s = 0; s < batch.size(); ++s) {
    if (output->hidden_first_row[s] < 0) continue;
    const float* src = x_.data() + spans_[s].first * hidden;
    float* dst = output->hidden.data() + output->hidden_first_row[s] * hidden;
    if (hidden_norm == nullptr) {
      std::copy_n(src, spans_[s].count * hidden, dst);
      continue;
    }
    for (int64_t i = 0; i < spans_[s].count; ++i) {
      kernels::rms_norm(src + i * hidden, hidden_norm, hidden, eps, dst + i * hidden);
    }
  }
}

Status Engine::forward(const std::vector<SequenceInput>& batch, ForwardOutput* output) {
  MOESERVE_ASSIGN_OR_RETURN(const int64_t tokens, begin_batch(batch, kv_cache_));
  const int64_t hidden = model_->config.hidden_size;
  for (size_t s = 0; s < batch.size(); ++s) {
    for (int64_t i = 0; i < spans_[s].count; ++i) {
      kernels::dequantize_row(embed_, batch[s].tokens[i],
                              x_.data() + (spans_[s].first + i) * hidden);
    }
  }

  if (output != nullptr) output->routing.clear();
  for (int64_t layer = 0; layer < static_cast<int64_t>(layers_.size()); ++layer) {
    MOESERVE_RETURN_IF_ERROR(run_layer(layers_[layer], layer, kv_cache_, layer, tokens, output));
  }
  const float* norm = model_->weights.norm.data();
  finish_batch(batch, norm, lm_head_, norm, {}, output);
  return ok_status();
}

Status Engine::mtp_forward(const std::vector<MtpInput>& batch, ForwardOutput* output) {
  if (!mtp_.has_value()) {
    return failed_precondition_error(
        model_->config.num_nextn_predict_layers == 0
            ? "MTP: the checkpoint has no MTP module (num_nextn_predict_layers is 0)"
            : "MTP: the model was loaded without its MTP layers");
  }
  std::vector<SequenceInput> sequences;
  std::vector<bool> no_logits;
  for (size_t s = 0; s < batch.size(); ++s) {
    no_logits.push_back(!batch[s].logits);
    if (batch[s].hidden == nullptr) {
      return invalid_argument_error("MTP batch sequence " + std::to_string(s) +
                                    ": no hidden states");
    }
    sequences.push_back(SequenceInput{.kv = batch[s].kv,
                                      .tokens = batch[s].tokens,
                                      .all_logits = batch[s].all_logits,
                                      .hidden_states = batch[s].hidden_states});
  }
  Mtp& m = *mtp_;
  MOESERVE_ASSIGN_OR_RETURN(const int64_t tokens, begin_batch(sequences, m.kv_cache));
  const model::ModelConfig& c = model_->config;
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // eh_proj's input per row: [enorm(embed(t_{j+1})) ; hnorm(h_j)].
  mtp_in_.resize(tokens * 2 * hidden);
  for (size_t s = 0; s < batch.size(); ++s) {
    for (int64_t i = 0; i < spans_[s].count; ++i) {
      float* row = mtp_in_.data() + (spans_[s].first + i) * 2 * hidden;
      kernels::dequantize_row(m.embed, batch[s].tokens[i], delta_.data());
      kernels::rms_norm(delta_.data(), m.enorm, hidden, eps, row);
      kernels::rms_norm(batch[s].hidden + i * hidden, m.hnorm, hidden, eps, row + hidden);
    }
  }
  kernels::matmul(m.eh_proj, mtp_in_.data(), tokens, x_.data(), pool_.get());

  if (output != nullptr) output->routing.clear();
  MOESERVE_RETURN_IF_ERROR(run_layer(m.block, m.layer_index, m.kv_cache, 0, tokens, output));
  finish_batch(sequences, m.shared_head_norm, m.head, nullptr, no_logits, output);
  return ok_status();
}

}  // namespace moeserve::engine
