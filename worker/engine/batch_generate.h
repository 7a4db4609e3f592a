// Generation of several requests together on one Engine: each step forwards every
// unfinished sequence in one batch (prefill of all prompts in the first step, then one
// decode token per sequence), sampling each with its own Sampler. Per request the
// result equals generate() up to the batch's floating-point effects.
//
// With a GroupStepper the ranks of an expert-parallel group step together: before each
// step every rank asks any_work(its unfinished count) and all get the same answer; the
// loop runs while any rank has work, and a rank without sequences runs idle_forward()
// so it joins the step's collectives. Every rank therefore runs the same number of
// steps. KV blocks are released however generation ends.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/generate.h"

namespace moeserve::engine {

class GroupStepper {
 public:
  virtual ~GroupStepper() = default;
  // True while any rank of the group has unfinished sequences (the same on every rank).
  virtual StatusOr<bool> any_work(int64_t local_sequences) = 0;
  // This rank's part of one forward step in which it has no sequences.
  virtual Status idle_forward() = 0;
};

// One result per request, in order. `stepper` may be null (a single process).
StatusOr<std::vector<GenerateResult>> generate_batch(Engine& engine,
                                                     const std::vector<GenerateRequest>& requests,
                                                     GroupStepper* stepper = nullptr);

}  // namespace moeserve::engine
