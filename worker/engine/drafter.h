// Drafter: proposes draft tokens for speculative decoding; the Scheduler verifies them
// with one forward of the main model over the pending token and its drafts.
//
// The scheduler owns one drafter for all its sequences and calls step() after every
// engine forward, with one DraftInput per sequence that forward advanced (after the
// scheduler rolled its KV cache back to the accepted tokens). step() first catches the
// drafter up with the positions the main model newly committed to its KV cache, then
// proposes up to max_draft tokens to follow the sequence's last token. Whatever the
// drafter computed beyond `committed` in an earlier step (chained drafts, say) is
// speculative and its own to discard.
//
// Position j of a sequence holds token tokens[j]; the main model's hidden state there
// predicts tokens[j + 1]. An MTP drafter consumes (hidden state of j, token j + 1) at its
// own position j, which is why it lags the main model by one token and why the hidden
// states of every committed position reach it exactly once.
//
// A sequence's first input (or its first after release()) may start past position 0:
// prefix-cache hits and the choices of n > 1 forked from choice 0's prompt come with
// KV the main model computed without this sequence, so no hidden states exist for
// [0, hidden_from); the drafter drafts without them (drafts stay a proposal: a poor one
// costs acceptance, never correctness).
//
// Draft distributions: a drafted token carries the distribution q it was drawn from
// (the drafter's logits processed by the request's SamplingParams the way the Sampler
// processes the main model's, or more loosely: q only has to be what it was drawn from),
// so that the scheduler's acceptance rule (accept with
// min(1, p/q), else resample from max(0, p - q)) keeps the output distribution exactly
// the main model's. An empty q is a point mass on the drafted token (deterministic
// drafters, and every drafter under greedy sampling).
//
// Not thread-safe: the scheduler thread alone calls it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/engine/sampler.h"

namespace moeserve::engine {

struct DraftInput {
  uint64_t sequence = 0;            // stable id of one choice of one request
  std::span<const int32_t> tokens;  // every known token: the prompt, then those generated
  int64_t committed = 0;            // tokens[0, committed) are in the main KV cache
  // Main model's final hidden states (ForwardOutput::hidden) of positions
  // [hidden_from, committed), one row each; nullptr when the drafter does not need them.
  int64_t hidden_from = 0;
  const float* hidden = nullptr;
  // Drafts wanted after tokens.back(); > 0 only when tokens.size() == committed + 1 (the
  // last token is the one the main model sampled and has not run yet).
  int32_t max_draft = 0;
  const SamplingParams* sampling = nullptr;  // the choice's sampling
  Rng* rng = nullptr;                        // draws drafts when sampling->temperature > 0
};

struct Draft {
  std::vector<int32_t> tokens;            // at most max_draft
  std::vector<std::vector<float>> probs;  // empty, or per token its vocabulary-sized q
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual std::string_view name() const = 0;  // "mtp", "ngram"
  // Whether step() needs DraftInput::hidden (the scheduler then asks the engine for
  // SequenceInput::hidden_states).
  virtual bool needs_hidden() const = 0;
  // `drafts` gets one Draft per input, in order. An error is fatal to the step.
  virtual Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) = 0;
  // The sequence ended or was preempted; a later input with the same id starts again
  // (hidden_from 0, or past a prefix-cache hit). A sequence it never saw is a no-op.
  virtual void release(uint64_t sequence) = 0;
};

}  // namespace moeserve::engine
