// Token sampling from a row of logits: greedy, temperature, top-k, top-p, min-p, the
// penalties, logit bias and min_tokens, with a per-request seeded PRNG, stop tokens,
// and log-probabilities.
//
// Order of operations (as in vLLM's sampler). First the logits are processed, for
// greedy and random sampling alike, using the choice's TokenHistory: a constraint
// (TokenAllowance: constrained decoding) sets every token it does not allow to -inf, the
// stop tokens included unless it allows them (their raw logits then stay); while fewer than
// min_tokens tokens were generated the stop tokens (EOS among them) get -inf;
// logit_bias is added by token id; repetition_penalty r (1 = off) rewrites the logit l of
// every token in the prompt or the generated tokens to l / r when l > 0 else l * r;
// then frequency_penalty * count and presence_penalty * (count > 0) are subtracted,
// count being the token's occurrences among the generated tokens only. Temperature 0
// then picks the argmax (ties go to the lower token id). Otherwise logits are divided
// by the temperature, tokens whose probability is below min_p times the top
// probability are dropped, the top_k largest are kept (0 = all), then the smallest set
// of most likely tokens whose probability reaches top_p (1 = all, at least one token is
// always kept), and one token is drawn from the renormalised distribution.
//
// Log-probabilities are those of the model's distribution, log_softmax of the raw
// logits (before any processing, temperature and truncation: vLLM's default
// "raw_logprobs"), for the chosen token and for the `top_logprobs` most likely tokens.
//
// sampling_distribution() is that same distribution written out over the whole
// vocabulary (what speculative decoding compares a draft's q with), and sample_from()
// draws from such a distribution.
//
// Determinism: the same seed and the same logits give the same tokens on every
// machine (splitmix64-seeded xoshiro256**, no std:: distributions). A Sampler belongs
// to one request and is not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve::engine {

inline constexpr int32_t kMaxTopLogprobs = 20;
inline constexpr double kMaxPenalty = 2.0;      // presence and frequency, as OpenAI's
inline constexpr double kMaxLogitBias = 100.0;  // as OpenAI's

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int32_t top_k = 0;         // 0: no limit
  double top_p = 1.0;        // in (0, 1]
  double min_p = 0.0;        // in [0, 1]; 0: off
  uint64_t seed = 0;
  int32_t top_logprobs = 0;  // alternatives to report, [0, kMaxTopLogprobs]
  std::vector<int32_t> stop_token_ids;
  double presence_penalty = 0.0;    // in [-kMaxPenalty, kMaxPenalty]
  double frequency_penalty = 0.0;   // in [-kMaxPenalty, kMaxPenalty]
  double repetition_penalty = 1.0;  // > 0; 1: off
  int32_t min_tokens = 0;           // >= 0: stop tokens are masked until this many
  // {token id >= 0, bias in [-kMaxLogitBias, kMaxLogitBias]}; the scheduler checks the
  // ids against the vocabulary.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// invalid_argument naming the parameter when out of range.
Status validate(const SamplingParams& params);

// What a constraint allows as the next token (constrained decoding, worker/structured):
// bit t of `allowed` (allowed[t / 64] >> (t % 64)) set when token t may come next, ids
// past its end may not; the stop tokens may come exactly when `stop_allowed`, whatever
// their bits.
struct TokenAllowance {
  std::span<const uint64_t> allowed;
  bool stop_allowed = false;
};

// What the next token of a choice follows: the prompt then the generated tokens, the
// last `generated` of `tokens`, and the constraint on it (null: none). The penalties and
// min_tokens read it.
struct TokenHistory {
  std::span<const int32_t> tokens;
  int64_t generated = 0;
  const TokenAllowance* constraint = nullptr;
};

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();

 private:
  uint64_t state_[4];
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;           // of `token` under the model's distribution
  std::vector<TokenLogprob> top;  // top_logprobs most likely tokens, descending
  bool stop = false;              // token is one of the stop tokens
};

class Sampler {
 public:
  // Precondition: validate(params).ok().
  explicit Sampler(SamplingParams params);

  SampleResult sample(const float* logits, int32_t vocab_size, TokenHistory history);
  // The result of choosing `token` from `logits` by other means (speculative decoding's
  // acceptance rule): its log-probabilities and stop flag as sample() reports them.
  SampleResult result_for(const float* logits, int32_t vocab_size, int32_t token);
  bool is_stop(int32_t token) const;
  const SamplingParams& params() const { return params_; }
  // The request's seeded stream, which sample() draws from.
  Rng& rng() { return rng_; }

 private:
  int32_t draw(const float* logits, int32_t vocab_size);

  SamplingParams params_;
  Rng rng_;
  std::vector<int32_t> order_;    // scratch: candidate ids
  std::vector<double> weights_;   // scratch: candidate probabilities
  std::vector<float> processed_;  // scratch: the processed logits
  std::vector<int32_t> counts_;   // scratch: occurrences per token id, zero between calls
};

// The vocabulary-sized distribution (probabilities summing to 1) that a Sampler with
// `params` draws from for `logits` after `history`: the logits processed, temperature,
// min-p, top-k and top-p applied, zero outside the kept tokens; greedy is one-hot on
// the processed argmax. Precondition: validate(params).ok().
void sampling_distribution(const float* logits, int32_t vocab_size, const SamplingParams& params,
                           TokenHistory history, std::vector<float>* probs);
// Draws a token with probability proportional to probs[token] (they need not sum to 1
// exactly; zeros are never drawn); -1 when every entry is zero.
int32_t sample_from(std::span<const float> probs, Rng& rng);

// Speculative sampling's acceptance rule: `draft` was drawn from q (empty: a point mass
// on `draft`) and p is the target distribution, both vocabulary-sized as
// sampling_distribution() writes them. Accepts the draft with probability
// min(1, p[draft] / q[draft]); on rejection draws the token from
// normalise(max(0, p - q)) (from p should rounding leave nothing). Either way the token
// is distributed exactly as p; under greedy p (one-hot) it is the argmax.
struct DraftVerdict {
  bool accepted = false;
  int32_t token = 0;  // the draft when accepted
};
DraftVerdict accept_draft(std::span<const float> p, int32_t draft, std::span<const float> q,
                          Rng& rng);

// log_softmax(logits)[token] computed stably in double.
float token_logprob(const float* logits, int32_t vocab_size, int32_t token);
// Index of the largest logit; ties go to the lower index.
int32_t argmax(const float* logits, int32_t vocab_size);

}  // namespace moeserve::engine
