// Test helpers for drafters: a greedy decode of the main model alone that feeds a
// Drafter after every forward the way the scheduler does, and the acceptance its drafts
// would have had (each step's agreeing prefix against the tokens that followed).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "worker/engine/drafter.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"

namespace moeserve::engine::testing {

// One sequence's greedy decode and the drafts the drafter made after every forward.
struct Trace {
  std::vector<int32_t> tokens;  // the prompt, then the main model's greedy tokens
  size_t prompt_size = 0;
  std::vector<std::vector<int32_t>> drafts;  // per decode step, to follow tokens[prompt + s]
};

// Decodes every prompt greedily with the main model alone, all in one batch, and feeds
// the drafter after each forward as the scheduler does (hidden states of the positions
// just committed, max_draft drafts after the newest token). `before_forward` runs before
// each engine forward (a group leader's step broadcast).
inline std::vector<Trace> decode_with_drafter(Engine& engine, Drafter& drafter,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              int steps, int32_t max_draft,
                                              const std::function<Status()>& before_forward = {}) {
  const int32_t vocab = static_cast<int32_t>(engine.config().vocab_size);
  const SamplingParams greedy;
  std::vector<Trace> traces(prompts.size());
  std::vector<SequenceKv> kv(prompts.size());
  std::vector<std::vector<int32_t>> step_tokens = prompts;
  for (size_t p = 0; p < prompts.size(); ++p) {
    traces[p].tokens = prompts[p];
    traces[p].prompt_size = prompts[p].size();
  }
  ForwardOutput out;
  for (int s = 0; s < steps; ++s) {
    std::vector<SequenceInput> batch;
    for (size_t p = 0; p < prompts.size(); ++p) {
      batch.push_back({.kv = &kv[p], .tokens = step_tokens[p], .hidden_states = true});
    }
    if (before_forward) {
      EXPECT_TRUE(before_forward().ok());
    }
    const Status forward = engine.forward(batch, &out);
    EXPECT_TRUE(forward.ok()) << forward.to_string();
    if (!forward.ok()) break;
    std::vector<DraftInput> inputs;
    for (size_t p = 0; p < prompts.size(); ++p) {
      traces[p].tokens.push_back(argmax(out.row(p), vocab));
      inputs.push_back(
          DraftInput{.sequence = 100 + p,
                     .tokens = traces[p].tokens,
                     .committed = kv[p].length,
                     .hidden_from = kv[p].length - static_cast<int64_t>(batch[p].tokens.size()),
                     .hidden = out.hidden_row(p, 0),
                     .max_draft = max_draft,
                     .sampling = &greedy});
      step_tokens[p] = {traces[p].tokens.back()};
    }
    std::vector<Draft> drafts;
    const Status drafted = drafter.step(inputs, &drafts);
    EXPECT_TRUE(drafted.ok()) << drafted.to_string();
    if (!drafted.ok()) break;
    for (size_t p = 0; p < prompts.size(); ++p) {
      EXPECT_LE(drafts[p].tokens.size(), static_cast<size_t>(max_draft));
      EXPECT_TRUE(drafts[p].probs.empty());
      traces[p].drafts.push_back(drafts[p].tokens);
    }
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    drafter.release(100 + p);
    engine.kv_cache().release(kv[p]);
  }
  return traces;
}

struct Acceptance {
  int64_t drafted = 0;
  int64_t accepted = 0;  // drafts in the agreeing prefix of each step's drafts
  double rate() const { return drafted == 0 ? 0.0 : static_cast<double>(accepted) / drafted; }
};

// Scores each step's drafts against the tokens the main model went on to produce.
inline Acceptance acceptance(const std::vector<Trace>& traces) {
  Acceptance a;
  for (const Trace& t : traces) {
    for (size_t s = 0; s < t.drafts.size(); ++s) {
      const size_t first = t.prompt_size + s + 1;  // the position draft 0 proposes
      bool agreeing = true;
      for (size_t d = 0; d < t.drafts[s].size() && first + d < t.tokens.size(); ++d) {
        ++a.drafted;
        agreeing = agreeing && t.drafts[s][d] == t.tokens[first + d];
        if (agreeing) ++a.accepted;
      }
    }
  }
  return a;
}

}  // namespace moeserve::engine::testing
