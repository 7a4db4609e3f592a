// NgramDrafter: model-free drafts by prompt lookup (vLLM's ngram proposer), for
// checkpoints without an MTP module.
//
// For a sequence whose last n tokens (n from max_ngram down to min_ngram, the longest
// that matches wins) occurred earlier in its own tokens, it proposes the tokens that
// followed the most recent earlier occurrence, up to max_draft of them; no match, no
// drafts. It reads only DraftInput::tokens: no hidden states, no state between steps,
// deterministic, and its drafts carry no q (a point mass on each drafted token).
//
// Not thread-safe (the Drafter contract): the scheduler thread alone calls it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "worker/engine/drafter.h"

namespace moeserve::engine {

// The tokens that followed the most recent earlier occurrence of the longest suffix of
// `tokens` of length in [min_ngram, max_ngram], at most max_draft of them.
std::vector<int32_t> ngram_lookup(std::span<const int32_t> tokens, int32_t min_ngram,
                                  int32_t max_ngram, int32_t max_draft);

class NgramDrafter final : public Drafter {
 public:
  static constexpr int32_t kMinNgram = 1;
  static constexpr int32_t kMaxNgram = 3;

  std::string_view name() const override { return "ngram"; }
  bool needs_hidden() const override { return false; }
  Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) override;
  void release(uint64_t) override {}
};

}  // namespace moeserve::engine
