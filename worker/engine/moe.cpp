#include "worker/engine/moe.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"

namespace moeserve::engine {
namespace {

// Scores of one token's router logits, written to `scores` (num_experts floats).
void score(model::ScoringFunc scoring, const float* logits, int64_t n, float* scores) {
  if (scoring == model::ScoringFunc::kSigmoid) {
    for (int64_t e = 0; e < n; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
  } else {
    std::copy_n(logits, n, scores);
    kernels::softmax(scores, n);
  }
}

// Masks (-inf) the experts of every group outside the topk_group best groups.
void limit_to_best_groups(const RoutingConfig& config, float* choice) {
  const int64_t group_size = config.num_experts / config.n_group;
  std::vector<float> group_scores(config.n_group);
  std::vector<int64_t> best(std::min<int64_t>(2, group_size));
  std::vector<float> best_values(best.size());
  for (int64_t g = 0; g < config.n_group; ++g) {
    const float* group = choice + g * group_size;
    if (config.method == model::TopkMethod::kNoauxTc) {
      kernels::top_k(group, group_size, static_cast<int64_t>(best.size()), best.data(),
                     best_values.data());
      group_scores[g] = 0.0f;
      for (float v : best_values) group_scores[g] += v;
    } else {
      group_scores[g] = *std::max_element(group, group + group_size);
    }
  }
  std::vector<int64_t> kept(config.topk_group);
  std::vector<float> kept_values(config.topk_group);
  kernels::top_k(group_scores.data(), config.n_group, config.topk_group, kept.data(),
                 kept_values.data());
  for (int64_t g = 0; g < config.n_group; ++g) {
    if (std::find(kept.begin(), kept.end(), g) != kept.end()) continue;
    std::fill_n(choice + g * group_size, group_size, -std::numeric_limits<float>::infinity());
  }
}

}  // namespace

RoutingConfig routing_config(const model::ModelConfig& config) {
  RoutingConfig r;
  r.num_experts = config.n_routed_experts;
  r.top_k = config.num_experts_per_tok;
  r.n_group = std::max<int64_t>(1, config.n_group);
  r.topk_group = std::max<int64_t>(1, std::min(config.topk_group, r.n_group));
  r.method = config.topk_method;
  r.scoring = config.scoring_func;
  r.norm_topk_prob = config.norm_topk_prob;
  r.routed_scaling_factor = config.routed_scaling_factor;
  r.always_scale = config.architecture == model::Architecture::kDeepseekV3;
  return r;
}

Routing route(const RoutingConfig& config, const float* router_logits, const float* bias,
              int64_t tokens) {
  const int64_t n = config.num_experts;
  const int64_t k = config.top_k;
  Routing routing;
  routing.tokens = tokens;
  routing.top_k = k;
  routing.experts.resize(tokens * k);
  routing.weights.resize(tokens * k);
  std::vector<float> scores(n), choice(n), values(k);
  std::vector<int64_t> chosen(k);
  const bool grouped = config.method != model::TopkMethod::kGreedy && config.n_group > 1;
  const bool normalise = k > 1 && config.norm_topk_prob;
  for (int64_t t = 0; t < tokens; ++t) {
    score(config.scoring, router_logits + t * n, n, scores.data());
    for (int64_t e = 0; e < n; ++e) choice[e] = scores[e] + (bias != nullptr ? bias[e] : 0.0f);
    if (grouped) limit_to_best_groups(config, choice.data());
    kernels::top_k(choice.data(), n, k, chosen.data(), values.data());

    float sum = 0.0f;
    for (int64_t i = 0; i < k; ++i) sum += scores[chosen[i]];
    float factor = 1.0f;
    if (normalise) factor /= sum + 1e-20f;
    if (config.always_scale || !normalise)
      factor *= static_cast<float>(config.routed_scaling_factor);
    for (int64_t i = 0; i < k; ++i) {
      routing.experts[t * k + i] = static_cast<int32_t>(chosen[i]);
      routing.weights[t * k + i] = scores[chosen[i]] * factor;
    }
  }
  return routing;
}

void MlpRunner::run(const MlpWeights& mlp, const float* x, int64_t tokens, float* out,
                    kernels::ThreadPool* pool) {
  const int64_t inter = mlp.gate.rows;
  gate_.resize(tokens * inter);
  up_.resize(tokens * inter);
  kernels::matmul(mlp.gate, x, tokens, gate_.data(), pool);
  kernels::matmul(mlp.up, x, tokens, up_.data(), pool);
  kernels::silu_mul(gate_.data(), up_.data(), tokens * inter, gate_.data());
  kernels::matmul(mlp.down, gate_.data(), tokens, out, pool);
}

LocalExpertDispatcher::LocalExpertDispatcher(std::vector<std::vector<MlpWeights>> experts_by_layer,
                                             int64_t hidden, kernels::ThreadPool* pool)
    : experts_(std::move(experts_by_layer)), hidden_(hidden), pool_(pool) {}

Status LocalExpertDispatcher::dispatch(int64_t layer, const float* x, const Routing& routing,
                                       float* out) {
  if (layer < 0 || layer >= static_cast<int64_t>(experts_.size()) || experts_[layer].empty()) {
    return internal_error("expert dispatch: layer " + std::to_string(layer) +
                          " has no local experts");
  }
  const std::vector<MlpWeights>& experts = experts_[layer];
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  std::fill_n(out, routing.tokens * hidden_, 0.0f);

  // Counting sort of the (token, slot) assignments by expert.
  std::vector<int64_t> start(num_experts + 1, 0);
  for (int32_t e : routing.experts) {
    if (e < 0 || e >= num_experts) {
      return internal_error("expert dispatch: expert " + std::to_string(e) + " out of range");
    }
    ++start[e + 1];
  }
  for (int64_t e = 0; e < num_experts; ++e) start[e + 1] += start[e];
  std::vector<int64_t> slots(routing.experts.size());
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t s = 0; s < static_cast<int64_t>(routing.experts.size()); ++s) {
    slots[next[routing.experts[s]]++] = s;
  }

  // Gather each expert's tokens, contiguous per expert in slot order.
  const int64_t slots_total = static_cast<int64_t>(slots.size());
  gathered_.resize(slots_total * hidden_);
  result_.resize(slots_total * hidden_);
  for (int64_t j = 0; j < slots_total; ++j) {
    std::copy_n(x + (slots[j] / routing.top_k) * hidden_, hidden_, gathered_.data() + j * hidden_);
  }
  std::vector<int64_t> active;
  for (int64_t e = 0; e < num_experts; ++e) {
    if (start[e + 1] > start[e]) active.push_back(e);
  }
  auto run_expert = [&](int64_t e, MlpRunner& runner, kernels::ThreadPool* pool) {
    const int64_t offset = start[e] * hidden_;
    runner.run(experts[e], gathered_.data() + offset, start[e + 1] - start[e],
               result_.data() + offset, pool);
  };
  // With at least one expert per thread (every decode step of a top-k >= threads model),
  // threads take whole experts: one pool dispatch per layer instead of three per expert,
  // each thread claiming the next expert when it finishes one (experts differ in tokens).
  // Otherwise each expert's matmuls are split over the pool.
  if (pool_ != nullptr && static_cast<int64_t>(active.size()) >= pool_->size()) {
    pool_->parallel_for_balanced(static_cast<int64_t>(active.size()),
                                 [&](int64_t begin, int64_t end) {
                                   MlpRunner runner;
                                   for (int64_t i = begin; i < end; ++i)
                                     run_expert(active[i], runner, nullptr);
                                 });
  } else {
    for (int64_t e : active) run_expert(e, runner_, pool_);
  }
  for (int64_t j = 0; j < slots_total; ++j) {
    kernels::scale_add(out + (slots[j] / routing.top_k) * hidden_, result_.data() + j * hidden_,
                       routing.weights[slots[j]], hidden_);
  }
  return ok_status();
}

}  // namespace moeserve::engine
