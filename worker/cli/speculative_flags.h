// The speculative-decoding flags that `generate` and `serve` share:
//
//   [--speculative mtp|ngram|none] [--num-draft-tokens K] [--speculative-max-batch N]
//
// --speculative picks the drafter (worker/engine/drafter_factory.h; mtp needs the
// checkpoint's MTP module and loads it), --num-draft-tokens the drafts per sequence and
// step (1..8), --speculative-max-batch the per-step switch: steps that run more
// sequences than that do not draft (docs/serving.md has the benchmark behind the
// default).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/flags.h"
#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/scheduler.h"

namespace moeserve::cli {

inline constexpr int64_t kMaxDraftTokens = 8;

struct SpeculativeFlags {
  std::string method = "none";
  int64_t num_draft_tokens = 1;
  int64_t max_batch = engine::SchedulerOptions{}.spec_max_batch;
};

void add_speculative_flags(FlagSet& flags, SpeculativeFlags* f);
// invalid_argument naming the flag at fault.
Status check_speculative_flags(const SpeculativeFlags& f);
// Whether the model must be loaded with its MTP layers (--speculative mtp).
bool needs_mtp_layers(const SpeculativeFlags& f);
// Sets the drafter, k and the switch in `options` (nothing for none); the drafter's
// refusal (mtp without an MTP module) is returned as is. `before_draft_forward` is
// make_drafter's (rank 0 of a group: the leader's kMtpForward broadcast).
Status configure_speculation(const SpeculativeFlags& f, engine::Engine& engine,
                             engine::SchedulerOptions* options,
                             std::function<Status()> before_draft_forward = {});

}  // namespace moeserve::cli
