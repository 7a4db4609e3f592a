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

void MlpRunner::project(const MlpWeights& mlp, const float* x, int64_t tokens,
                        std::vector<kernels::MatmulTask>& tasks) {
  const int64_t inter = mlp.gate.rows;
  gate_.resize(tokens * inter);
  up_.resize(tokens * inter);
  tasks.push_back({mlp.gate, x, tokens, gate_.data()});
  tasks.push_back({mlp.up, x, tokens, up_.data()});
}

void MlpRunner::finish(const MlpWeights& mlp, int64_t tokens, float* out,
                       kernels::ThreadPool* pool) {
  kernels::silu_mul(gate_.data(), up_.data(), tokens * mlp.gate.rows, gate_.data());
  kernels::matmul(mlp.down, gate_.data(), tokens, out, pool);
}

void MlpRunner::run(const MlpWeights& mlp, const float* x, int64_t tokens, float* out,
                    kernels::ThreadPool* pool) {
  tasks_.clear();
  project(mlp, x, tokens, tasks_);
  kernels::matmul_all(tasks_, pool);
  finish(mlp, tokens, out, pool);
}

LocalExpertDispatcher::LocalExpertDispatcher(std::vector<std::vector<MlpWeights>> experts_by_layer,
                                             int64_t hidden, kernels::ThreadPool* pool)
    : experts_(std::move(experts_by_layer)), hidden_(hidden), pool_(pool) {}

const float* LocalExpertDispatcher::gather(const float* x, int64_t begin, int64_t end,
                                           const std::vector<int64_t>& slots, int64_t top_k) {
  float* rows = gathered_.data() + begin * hidden_;
  for (int64_t j = begin; j < end; ++j) {
    std::copy_n(x + (slots[j] / top_k) * hidden_, hidden_, rows + (j - begin) * hidden_);
  }
  return rows;
}

void LocalExpertDispatcher::run_rows_split(const std::vector<MlpWeights>& experts,
                                           const std::vector<int64_t>& active,
                                           const std::vector<int64_t>& start,
                                           const std::vector<int64_t>& slots, const float* x,
                                           int64_t top_k) {
  // The intermediate rows of expert active[i] start at offset[i] in gate_ and up_.
  std::vector<int64_t> offset(active.size() + 1, 0);
  for (size_t i = 0; i < active.size(); ++i) {
    const int64_t e = active[i];
    offset[i + 1] = offset[i] + (start[e + 1] - start[e]) * experts[e].gate.rows;
  }
  gate_.resize(offset.back());
  up_.resize(offset.back());
  std::vector<kernels::MatmulTask> tasks;
  for (size_t i = 0; i < active.size(); ++i) {
    const int64_t e = active[i], n = start[e + 1] - start[e];
    const float* in = gather(x, start[e], start[e + 1], slots, top_k);
    tasks.push_back({experts[e].gate, in, n, gate_.data() + offset[i]});
    tasks.push_back({experts[e].up, in, n, up_.data() + offset[i]});
  }
  kernels::matmul_all(tasks, pool_);
  tasks.clear();
  for (size_t i = 0; i < active.size(); ++i) {
    const int64_t e = active[i];
    // Per expert, as MlpRunner does (silu_mul's vector tail depends on where a call starts).
    kernels::silu_mul(gate_.data() + offset[i], up_.data() + offset[i], offset[i + 1] - offset[i],
                      gate_.data() + offset[i]);
    tasks.push_back({experts[e].down, gate_.data() + offset[i], start[e + 1] - start[e],
                     result_.data() + start[e] * hidden_});
  }
  kernels::matmul_all(tasks, pool_);
}

Status LocalExpertDispatcher::dispatch(int64_t layer, const float* x, const Routing& routing,
                                       float* out) {
  if (layer < 0 || layer >= static_cast<int64_t>(experts_.size()) || experts_[layer].empty()) {
    return internal_error("expert dispatch: layer " + std::to_string(layer) +
                          " has no local experts");
  }
  const std::vector<MlpWeights>& experts = experts_[layer];
  const int64_t num_experts = static_cast<int64_t>(experts.size());

  // Counting sort of the (token, slot) assignments by expert: expert e's tokens are
  // positions [start[e], start[e + 1]) of the gathered rows, slots[j] the slot at position j.
  std::vector<int64_t> start(num_experts + 1, 0);
  for (int32_t e : routing.experts) {
    if (e < 0 || e >= num_experts) {
      return internal_error("expert dispatch: expert " + std::to_string(e) + " out of range");
    }
    ++start[e + 1];
  }
  for (int64_t e = 0; e < num_experts; ++e) start[e + 1] += start[e];
  const int64_t slots_total = static_cast<int64_t>(routing.experts.size());
  std::vector<int64_t> slots(slots_total), position(slots_total);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t s = 0; s < slots_total; ++s) {
    position[s] = next[routing.experts[s]]++;
    slots[position[s]] = s;
  }

  gathered_.resize(slots_total * hidden_);
  result_.resize(slots_total * hidden_);
  // Gathers expert e's tokens and runs it on them.
  auto run_expert = [&](int64_t e, MlpRunner& runner, kernels::ThreadPool* pool) {
    const float* in = gather(x, start[e], start[e + 1], slots, routing.top_k);
    runner.run(experts[e], in, start[e + 1] - start[e], result_.data() + start[e] * hidden_, pool);
  };
  std::vector<int64_t> active;
  for (int64_t e = 0; e < num_experts; ++e) {
    if (start[e + 1] > start[e]) active.push_back(e);
  }
  // With at least two experts per thread (a decode step of a top-k >= 2 x threads model,
  // a prefill), threads take whole experts: one pool dispatch per layer. They claim one
  // expert at a time, the most tokens first, so the step ends with the smallest experts and
  // no thread waits long for the last (a prefill's 64 experts of 1-20 tokens each in chunks
  // of 8 left one thread idle for up to an eighth of the layer).
  // With fewer (top-8 on 16 threads), whole experts would leave threads idle, and splitting
  // each expert's matmuls over the pool costs three dispatches per expert; instead every
  // expert's gate and up run as one matmul_all, then every down: two dispatches per layer.
  if (pool_ != nullptr && static_cast<int64_t>(active.size()) >= 2 * pool_->size()) {
    std::stable_sort(active.begin(), active.end(), [&](int64_t a, int64_t b) {
      return start[a + 1] - start[a] > start[b + 1] - start[b];
    });
    const int64_t n = static_cast<int64_t>(active.size());
    pool_->parallel_for_balanced(
        n,
        [&](int64_t begin, int64_t end) {
          thread_local MlpRunner runner;  // its scratch is reused from step to step
          for (int64_t i = begin; i < end; ++i) run_expert(active[i], runner, nullptr);
        },
        static_cast<int>((n + pool_->size() - 1) / pool_->size()));
  } else if (pool_ != nullptr) {
    run_rows_split(experts, active, start, slots, x, routing.top_k);
  } else {
    for (int64_t e : active) run_expert(e, runner_, nullptr);
  }

  // out[t] = sum of its slots' weighted results, added in expert order (as one serial pass
  // over the positions would), in parallel over tokens.
  const int64_t k = routing.top_k;
  auto combine = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> order(k);
    for (int64_t t = begin; t < end; ++t) {
      float* row = out + t * hidden_;
      std::fill_n(row, hidden_, 0.0f);
      for (int64_t i = 0; i < k; ++i) order[i] = position[t * k + i];
      std::sort(order.begin(), order.end());
      for (int64_t j : order) {
        kernels::scale_add(row, result_.data() + j * hidden_, routing.weights[slots[j]], hidden_);
      }
    }
  };
  if (pool_ != nullptr) {
    pool_->parallel_for(routing.tokens, combine);
  } else {
    combine(0, routing.tokens);
  }
  return ok_status();
}

}  // namespace moeserve::engine
