#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace moeserve::engine {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Orders token ids by descending logit, ties by ascending id.
struct ByLogit {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// The tokens a temperature > 0 draw chooses from: order[0, count) with unnormalised
// probabilities weights[0, count) summing to total, most likely first when truncated.
struct Candidates {
  int32_t count = 0;
  double total = 0.0;
};

// top_p alone over the candidates in `order`: the most likely prefix whose mass reaches
// top_p of the candidates' whole mass, in ByLogit order. Sorting only as far as that
// prefix reaches (partition off the first 64, then 4x more each round, and sort only
// those) gives the same prefix in the same order as sorting everything (ByLogit is a
// strict total order), at a fraction of the cost on a 129k-token vocabulary. The whole
// mass is summed in id order, so only a prefix whose mass lies within rounding of the
// threshold could end one token apart from a full sort's.
Candidates top_p_candidates(const float* logits, float max, double inv_temperature, double top_p,
                            std::vector<int32_t>& order, std::vector<double>& weights) {
  const int32_t count = static_cast<int32_t>(order.size());
  double total = 0.0;
  for (int32_t id : order)
    total += std::exp((static_cast<double>(logits[id]) - max) * inv_temperature);
  weights.clear();
  double mass = 0.0;
  int32_t sorted = 0;
  for (int32_t reach = std::min<int32_t>(64, count);;
       reach = static_cast<int32_t>(std::min<int64_t>(4 * int64_t{reach}, count))) {
    if (reach < count) {
      std::nth_element(order.begin() + sorted, order.begin() + reach, order.end(), ByLogit{logits});
    }
    std::sort(order.begin() + sorted, order.begin() + reach, ByLogit{logits});
    for (; sorted < reach; ++sorted) {
      if (sorted > 0 && mass >= top_p * total) return {sorted, mass};
      weights.push_back(
          std::exp((static_cast<double>(logits[order[sorted]]) - max) * inv_temperature));
      mass += weights.back();
    }
    if (reach == count) return {count, mass};
  }
}

Candidates candidates(const float* logits, int32_t vocab_size, const SamplingParams& params,
                      std::vector<int32_t>& order, std::vector<double>& weights) {
  const double inv_temperature = 1.0 / params.temperature;
  const float max = *std::max_element(logits, logits + vocab_size);
  const bool truncate = params.top_k > 0 || params.top_p < 1.0;

  // Masked tokens (-inf) and, with min_p, those less likely than min_p times the top
  // token (whose weight below is 1) are never candidates.
  order.clear();
  for (int32_t i = 0; i < vocab_size; ++i) {
    if (logits[i] == -std::numeric_limits<float>::infinity()) continue;
    if (params.min_p > 0.0 &&
        std::exp((static_cast<double>(logits[i]) - max) * inv_temperature) < params.min_p) {
      continue;
    }
    order.push_back(i);
  }
  Candidates kept{static_cast<int32_t>(order.size()), 0.0};
  if (params.top_k > 0 && params.top_k < kept.count) {
    kept.count = params.top_k;
    std::partial_sort(order.begin(), order.begin() + kept.count, order.end(), ByLogit{logits});
  } else if (params.top_p < 1.0) {
    return top_p_candidates(logits, max, inv_temperature, params.top_p, order, weights);
  } else if (truncate) {
    std::sort(order.begin(), order.end(), ByLogit{logits});
  }

  weights.resize(kept.count);
  for (int32_t i = 0; i < kept.count; ++i) {
    weights[i] = std::exp((static_cast<double>(logits[order[i]]) - max) * inv_temperature);
    kept.total += weights[i];
  }
  if (params.top_p < 1.0) {
    // Keep the most likely prefix whose mass reaches top_p (order is sorted here).
    double mass = 0.0;
    int32_t n = 0;
    while (n < kept.count && (n == 0 || mass < params.top_p * kept.total)) mass += weights[n++];
    kept = {n, mass};
  }
  return kept;
}

bool has_penalties(const SamplingParams& params) {
  return params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 ||
         params.repetition_penalty != 1.0;
}

// -inf for every token the constraint does not allow (word by word: most words are all
// allowed or all refused); the stop tokens keep their raw logits exactly when allowed.
void apply_constraint(const float* logits, int32_t vocab_size, const SamplingParams& params,
                      const TokenAllowance& constraint, std::vector<float>& processed) {
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  const std::span<const uint64_t> words = constraint.allowed;
  for (int32_t base = 0; base < vocab_size; base += 64) {
    const size_t w = static_cast<size_t>(base) / 64;
    const uint64_t bits = w < words.size() ? words[w] : 0;
    if (bits == ~uint64_t{0}) continue;
    const int32_t end = std::min(base + 64, vocab_size);
    for (int32_t t = base; t < end; ++t) {
      if (((bits >> (t - base)) & 1) == 0) processed[t] = kMasked;
    }
  }
  for (int32_t t : params.stop_token_ids) {
    if (t >= 0 && t < vocab_size) processed[t] = constraint.stop_allowed ? logits[t] : kMasked;
  }
}

// The logits the draw uses (the header's first paragraph): `logits` itself when no
// parameter changes them, else `processed` filled. `counts` is scratch.
const float* process_logits(const float* logits, int32_t vocab_size, const SamplingParams& params,
                            TokenHistory history, std::vector<float>& processed,
                            std::vector<int32_t>& counts) {
  const bool mask_stops = history.generated < params.min_tokens && !params.stop_token_ids.empty();
  if (!mask_stops && history.constraint == nullptr && params.logit_bias.empty() &&
      !has_penalties(params)) {
    return logits;
  }
  processed.assign(logits, logits + vocab_size);
  if (history.constraint != nullptr) {
    apply_constraint(logits, vocab_size, params, *history.constraint, processed);
  }
  if (mask_stops) {
    for (int32_t t : params.stop_token_ids) {
      if (t >= 0 && t < vocab_size) processed[t] = -std::numeric_limits<float>::infinity();
    }
  }
  for (const auto& [token, bias] : params.logit_bias) processed[token] += bias;
  if (!has_penalties(params)) return processed.data();

  // counts[t]: occurrences of t among the generated tokens, -1 for a token seen only in
  // the prompt (repetition_penalty covers both, the others only the generated ones).
  // All zero between calls, so that a step costs the history's length, not the
  // vocabulary's: each token is penalised once, at its first occurrence, and zeroed.
  if (counts.size() != static_cast<size_t>(vocab_size)) counts.assign(vocab_size, 0);
  const size_t prompt = history.tokens.size() - static_cast<size_t>(history.generated);
  for (size_t i = 0; i < history.tokens.size(); ++i) {
    int32_t& c = counts[history.tokens[i]];
    if (i >= prompt) {
      c = std::max(c, 0) + 1;
    } else if (c == 0) {
      c = -1;
    }
  }
  const float repetition = static_cast<float>(params.repetition_penalty);
  const float frequency = static_cast<float>(params.frequency_penalty);
  const float presence = static_cast<float>(params.presence_penalty);
  for (int32_t t : history.tokens) {
    const int32_t c = std::exchange(counts[t], 0);
    if (c == 0) continue;
    float& l = processed[t];
    if (repetition != 1.0f) l = l > 0.0f ? l / repetition : l * repetition;
    if (c > 0) l -= frequency * static_cast<float>(c) + presence;
  }
  return processed.data();
}

double log_sum_exp(const float* logits, int32_t vocab_size) {
  const float max = *std::max_element(logits, logits + vocab_size);
  double sum = 0.0;
  for (int32_t i = 0; i < vocab_size; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return static_cast<double>(max) + std::log(sum);
}

}  // namespace

Status validate(const SamplingParams& params) {
  if (!(params.temperature >= 0.0) || !std::isfinite(params.temperature)) {
    return invalid_argument_error("temperature must be a finite number >= 0, got " +
                                  std::to_string(params.temperature));
  }
  if (!(params.top_p > 0.0 && params.top_p <= 1.0)) {
    return invalid_argument_error("top_p must be in (0, 1], got " + std::to_string(params.top_p));
  }
  if (params.top_k < 0) {
    return invalid_argument_error("top_k must be >= 0 (0 disables it), got " +
                                  std::to_string(params.top_k));
  }
  if (params.top_logprobs < 0 || params.top_logprobs > kMaxTopLogprobs) {
    return invalid_argument_error("top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) +
                                  "], got " + std::to_string(params.top_logprobs));
  }
  if (!(params.min_p >= 0.0 && params.min_p <= 1.0)) {
    return invalid_argument_error("min_p must be in [0, 1], got " + std::to_string(params.min_p));
  }
  for (const auto& [name, value] : {std::pair{"presence_penalty", params.presence_penalty},
                                    std::pair{"frequency_penalty", params.frequency_penalty}}) {
    if (!(value >= -kMaxPenalty && value <= kMaxPenalty)) {
      return invalid_argument_error(std::string(name) + " must be in [-2, 2], got " +
                                    std::to_string(value));
    }
  }
  if (!(params.repetition_penalty > 0.0) || !std::isfinite(params.repetition_penalty)) {
    return invalid_argument_error("repetition_penalty must be a finite number > 0, got " +
                                  std::to_string(params.repetition_penalty));
  }
  if (params.min_tokens < 0) {
    return invalid_argument_error("min_tokens must be >= 0, got " +
                                  std::to_string(params.min_tokens));
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0) {
      return invalid_argument_error("logit_bias: token id " + std::to_string(token) +
                                    " must be >= 0");
    }
    if (!(bias >= -kMaxLogitBias && bias <= kMaxLogitBias)) {
      return invalid_argument_error("logit_bias: the bias of token " + std::to_string(token) +
                                    " must be in [-100, 100], got " + std::to_string(bias));
    }
  }
  return ok_status();
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : state_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int32_t argmax(const float* logits, int32_t vocab_size) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab_size; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

DraftVerdict accept_draft(std::span<const float> p, int32_t draft, std::span<const float> q,
                          Rng& rng) {
  const double q_draft = q.empty() ? 1.0 : static_cast<double>(q[draft]);
  if (rng.uniform() * q_draft < static_cast<double>(p[draft])) return {true, draft};
  std::vector<float> residual(p.begin(), p.end());
  if (q.empty()) {
    residual[draft] = std::max(0.0f, residual[draft] - 1.0f);
  } else {
    for (size_t i = 0; i < residual.size(); ++i) residual[i] = std::max(0.0f, p[i] - q[i]);
  }
  const int32_t token = sample_from(residual, rng);
  return {false, token >= 0 ? token : sample_from(p, rng)};
}

float token_logprob(const float* logits, int32_t vocab_size, int32_t token) {
  return static_cast<float>(static_cast<double>(logits[token]) - log_sum_exp(logits, vocab_size));
}

void sampling_distribution(const float* raw_logits, int32_t vocab_size,
                           const SamplingParams& params, TokenHistory history,
                           std::vector<float>* probs) {
  std::vector<float> processed;
  std::vector<int32_t> counts;
  const float* logits = process_logits(raw_logits, vocab_size, params, history, processed, counts);
  probs->assign(vocab_size, 0.0f);
  if (params.temperature <= 0.0) {
    (*probs)[argmax(logits, vocab_size)] = 1.0f;
    return;
  }
  std::vector<int32_t> order;
  std::vector<double> weights;
  const Candidates kept = candidates(logits, vocab_size, params, order, weights);
  for (int32_t i = 0; i < kept.count; ++i) {
    (*probs)[order[i]] = static_cast<float>(weights[i] / kept.total);
  }
}

int32_t sample_from(std::span<const float> probs, Rng& rng) {
  double total = 0.0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    total += probs[i];
    last = static_cast<int32_t>(i);
  }
  if (last < 0) return -1;
  double u = rng.uniform() * total;
  for (int32_t i = 0; i < last; ++i) {
    if (probs[i] <= 0.0f) continue;
    u -= probs[i];
    if (u < 0.0) return i;
  }
  return last;
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {}

bool Sampler::is_stop(int32_t token) const {
  return std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), token) !=
         params_.stop_token_ids.end();
}

int32_t Sampler::draw(const float* logits, int32_t vocab_size) {
  if (params_.temperature <= 0.0) return argmax(logits, vocab_size);
  const Candidates kept = candidates(logits, vocab_size, params_, order_, weights_);
  double u = rng_.uniform() * kept.total;
  for (int32_t i = 0; i < kept.count; ++i) {
    u -= weights_[i];
    if (u < 0.0) return order_[i];
  }
  return order_[kept.count - 1];
}

SampleResult Sampler::sample(const float* logits, int32_t vocab_size, TokenHistory history) {
  const float* processed =
      process_logits(logits, vocab_size, params_, history, processed_, counts_);
  return result_for(logits, vocab_size, draw(processed, vocab_size));
}

SampleResult Sampler::result_for(const float* logits, int32_t vocab_size, int32_t token) {
  SampleResult result;
  result.token = token;
  const double lse = log_sum_exp(logits, vocab_size);
  result.logprob = static_cast<float>(static_cast<double>(logits[result.token]) - lse);
  if (params_.top_logprobs > 0) {
    const int32_t n = std::min(params_.top_logprobs, vocab_size);
    order_.resize(vocab_size);
    for (int32_t i = 0; i < vocab_size; ++i) order_[i] = i;
    std::partial_sort(order_.begin(), order_.begin() + n, order_.end(), ByLogit{logits});
    for (int32_t i = 0; i < n; ++i) {
      result.top.push_back(
          {order_[i], static_cast<float>(static_cast<double>(logits[order_[i]]) - lse)});
    }
  }
  result.stop = is_stop(result.token);
  return result;
}

}  // namespace moeserve::engine
