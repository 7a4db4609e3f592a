// MtpDrafter: the Drafter (drafter.h) that drafts with the checkpoint's MTP module
// (Engine::mtp_forward).
//
// Per sequence it keeps the MTP KV (in the engine's MTP cache) of the MTP positions it
// has run, [0, done), and the main model's hidden states of the committed positions it
// could not run yet: MTP position j needs t_{j+1}, so the newest committed position
// waits until the token after it is known. step() runs ONE batched mtp_forward over every
// input's runnable rows (positions [done, committed) whose next token is known); the last
// row of a sequence with max_draft > 0 is position committed - 1, whose logits give
// draft 1 (the other sequences' rows compute no logits). Catching up is lazy: a step in
// which no input drafts and none has kMaxWaitingRows runnable rows runs nothing, so
// steps that do not speculate (the scheduler's per-step switch) cost the drafter
// nothing, and the rows waiting are caught up, batched, with the next draft. Drafts 2..max_draft
// chain the module on its own output: the block's output h' (before shared_head.norm) and the
// previous draft are the next position's input, one batched mtp_forward per draft depth, as vLLM's
// MTP proposer does. Chained positions are speculative: the next step truncates the MTP KV back to
// `done` and overwrites them.
//
// Drafts are the argmax of the MTP logits under greedy sampling (empty q), else drawn
// from q = sampling_distribution(logits, the request's SamplingParams) with the
// request's Rng, and q is returned with the draft. q sees an empty TokenHistory (no
// penalties): the scheduler verifies against the target's p with the real history, so
// the output stays exact and only the acceptance rate depends on q.
//
// A sequence whose first input starts past position 0 (a prefix-cache hit, a forked
// choice of n > 1) has no main hidden states for [0, hidden_from): those MTP positions
// run with zero hidden states, on their tokens alone (hnorm(0) = 0, so only the
// embedding half of eh_proj contributes), in the same catch-up forward. The sequences of
// a step whose catch-up does not fit in the MTP KV cache are given up (their MTP KV is
// given back) and get empty drafts until release(); a chained draft that does not fit
// ends that step's chain.
//
// Expert-parallel groups: `before_forward`, when set, runs before every mtp_forward (rank
// 0 broadcasts kMtpForward there, group_step.h) so that the followers join its MoE.
//
// Not thread-safe: the scheduler thread alone calls it. The engine must outlive it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/engine/drafter.h"
#include "worker/engine/engine.h"
#include "worker/engine/kv_cache.h"

namespace moeserve::engine {

class MtpDrafter : public Drafter {
 public:
  // failed_precondition when the engine has no MTP module (the checkpoint has none,
  // num_nextn_predict_layers 0, or it was loaded without it).
  static StatusOr<std::unique_ptr<MtpDrafter>> create(Engine* engine,
                                                      std::function<Status()> before_forward = {});
  ~MtpDrafter() override;

  std::string_view name() const override { return "mtp"; }
  bool needs_hidden() const override { return true; }
  Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) override;
  void release(uint64_t sequence) override;

  // Runnable rows a sequence may keep waiting before a step catches it up anyway.
  static constexpr int64_t kMaxWaitingRows = 64;

  // Sequences it holds state for (tests).
  size_t num_sequences() const { return states_.size(); }

 private:
  struct State {
    SequenceKv kv;               // MTP positions [0, done) committed, more when chained
    int64_t done = 0;            // MTP positions run with the main model's hidden states
    std::vector<float> waiting;  // hidden states of positions [done, done + rows) not run yet
    bool off = false;            // given up: the MTP KV cache was full (see above)
  };

  MtpDrafter(Engine* engine, std::function<Status()> before_forward);
  Status run(const std::vector<MtpInput>& batch, ForwardOutput* output);
  // Draft from one row of MTP logits into `draft`.
  Status draft_from(const float* logits, const DraftInput& input, Draft* draft);
  void drop(State& state);

  Engine* engine_;
  std::function<Status()> before_forward_;
  std::map<uint64_t, State> states_;
  // Scratch.
  ForwardOutput output_;
  std::vector<float> chain_hidden_;
  std::vector<int32_t> chain_tokens_;
};

}  // namespace moeserve::engine
