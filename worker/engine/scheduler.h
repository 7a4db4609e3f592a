// Scheduler: continuous batching of generation requests over one Engine.
//
// One scheduler thread owns the Engine, its KV cache and the prefix cache. Other
// threads submit() requests and read each request's events (generated tokens, then a
// finish) from its RequestStream, a thread-safe queue; they may cancel() a request or
// stop_choice() one of its choices at any time, and the scheduler acts on it at the
// start of its next step (the KV blocks are freed there).
//
// Each step: (1) every running sequence gets its next chunk: one token when decoding,
// or up to the remaining token budget of its prompt when prefilling (chunked prefill);
// (2) waiting requests are admitted, oldest first, while the token budget
// (max_num_batched_tokens), max_num_seqs and the free KV blocks allow; (3) one
// forward() runs over all of it, prefill and decode mixed; (4) each sequence that
// reached its end samples a token and streams it out, finishing on a stop token or
// max_tokens. When a running sequence needs a KV block and none is free (after
// evicting unreferenced prefix-cache blocks), the newest running request is preempted:
// its blocks are freed and it goes back to the front of the queue, to be recomputed
// from its prompt and the tokens it already generated (the prefix cache usually holds
// most of them). Running requests never fail for lack of blocks: a request that could
// not fit in the whole cache alone is rejected by submit().
//
// n > 1: choice 0 prefills the prompt; the other choices then fork its KV blocks
// (KvCache::fork shares whole blocks) and sample from the same logits with seeds
// seed + i. Prefix caching (PrefixCache): prompts start from the longest cached
// block-aligned prefix; every full block a sequence computes is listed in the cache.
//
// Speculative decoding (SchedulerOptions::drafter, drafter.h): after every forward the
// drafter sees each sequence that forward advanced and proposes up to
// num_draft_tokens drafts for each decoding one. The next step runs a speculating
// sequence as [pending token, drafts...] with logits for every position (its token
// budget counts 1 + drafts) and accepts the longest prefix the main model agrees with,
// then the main model's own next token: greedy by argmax equality, temperature > 0 by
// the speculative-sampling rule (accept_draft() in sampler.h), so the output is
// distributed exactly as without drafts, top-k/top-p/seed included; each choice of
// n > 1 drafts on its own. Rejected positions are truncated off the KV cache before
// the prefix cache lists any block, so a listed block never holds an unaccepted
// position. Drafts never reach past max_tokens; a stop token among accepted tokens
// ends the choice there and drops the rest; tokens stream in order as they are
// accepted and carry the main model's logprobs. Per-step switch: no sequence
// speculates in a step that decodes more than spec_max_batch sequences (the step is
// compute-bound and verification costs more than it saves), and a choice whose
// acceptance EWMA (weight 0.5 per step) fell below spec_min_acceptance drafts again
// only to probe: after kSpecProbeInterval steps, the interval doubling with every probe
// that stays low up to kSpecMaxProbeInterval.
//
// Constrained decoding (GenerationRequest::constraint): each choice keeps its own
// structured::TokenMatcher. Every token it samples, plainly or when verifying drafts, is
// drawn from logits masked to the tokens the grammar allows after the choice's tokens so
// far (the drafts accepted before it included), with the stop tokens allowed exactly when
// the output is a whole sentence; the matcher then advances by the token. So the output
// of a choice that stops is a sentence of the grammar, and one cut by max_tokens is a
// prefix of one (finish kLength). Drafts themselves are proposed unconstrained: a draft
// the mask refuses has target probability 0 and is rejected. A grammar that allows no
// token of the vocabulary ends the choice with kError.
//
// Draining: drain() makes submit() refuse new requests; queued and running ones finish.
// stop() cancels whatever is left and joins the thread.
//
// Expert load: the routing of each completed forward is recorded in expert_load(), the
// worker's one expert-load account (expert_load.h), which other threads read.
//
// Group hooks (rank 0 of an expert-parallel group; group_step.h installs them):
// before_forward runs on the scheduler thread before each engine forward, idle at least
// every idle_interval while no forward runs. A failing hook is fatal to the scheduler:
// every request ends with kError carrying the hook's Status, submit() refuses new ones
// (unavailable), the thread ends, and failure() returns that Status.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/drafter.h"
#include "worker/engine/engine.h"
#include "worker/engine/expert_load.h"
#include "worker/engine/prefix_cache.h"
#include "worker/engine/sampler.h"
#include "worker/structured/token_constraint.h"

namespace moeserve::engine {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
// "stop", "length", "cancelled", "error" ("" for kNone).
std::string_view finish_reason_name(FinishReason reason);

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token, all inside the vocabulary
  int64_t max_tokens = 16;      // per choice, at least 1
  int32_t n = 1;                // choices
  SamplingParams sampling;      // choice i samples with seed + i; stop_token_ids end a choice
  // Opt-in: the first token event of choice 0 carries the full-vocabulary logits at the
  // last prompt position (a vocab-sized copy, so only when asked).
  bool return_prompt_logits = false;
  // Constrained decoding (see the top of this file); null: none. Needs stop tokens (the
  // only way a constrained choice ends before max_tokens) and min_tokens 0.
  std::shared_ptr<structured::TokenConstraint> constraint;
};

struct GenerationEvent {
  int32_t choice = 0;
  bool has_token = false;
  SampleResult sample;                        // when has_token
  std::vector<float> prompt_logits;           // see return_prompt_logits
  FinishReason finish = FinishReason::kNone;  // set on the last event of a choice
  Status error;                               // with kError
};

// The submitter's side of one request. Thread-safe.
class RequestStream {
 public:
  RequestStream(int32_t n, int64_t prompt_tokens, Clock::TimePoint submitted);

  // Waits until events are pending (or `timeout` passes) and returns them all, in
  // order; empty on timeout or once every choice has finished and was read.
  std::vector<GenerationEvent> next(std::chrono::milliseconds timeout);
  // Ends the whole request (e.g. the client went away). Unread choices finish with
  // kCancelled.
  void cancel();
  // Ends one choice (e.g. it hit a stop string): no more tokens for it.
  void stop_choice(int32_t choice);
  // True once every choice's finish event was read by next().
  bool done() const;

  int32_t n() const { return n_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  Clock::TimePoint submitted() const { return submitted_; }
  // Prompt tokens served from the prefix cache at first admission.
  int64_t cached_prompt_tokens() const { return cached_prompt_tokens_.load(); }
  // Seconds from submit() to first admission; negative until admitted.
  double queue_seconds() const { return queue_seconds_.load(); }

 private:
  friend class Scheduler;
  void push(std::vector<GenerationEvent> events);
  bool cancelled() const { return cancelled_.load(); }
  bool choice_stopped(int32_t choice) const;

  const int32_t n_;
  const int64_t prompt_tokens_;
  const Clock::TimePoint submitted_;
  std::atomic<bool> cancelled_{false};
  std::unique_ptr<std::atomic<bool>[]> stopped_;
  std::atomic<int64_t> cached_prompt_tokens_{0};
  std::atomic<double> queue_seconds_{-1.0};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  int32_t finished_read_ = 0;
};

struct SchedulerOptions {
  int64_t max_num_seqs = 32;              // sequences (choices) running at once
  int64_t max_num_batched_tokens = 1024;  // tokens per forward() step
  int64_t max_queue = 128;                // waiting requests; more are refused
  bool prefix_caching = true;
  Clock* clock = nullptr;  // default: RealClock
  // Group hooks (see the top of this file); unset: none.
  std::function<Status()> before_forward;
  std::function<Status()> idle;
  std::chrono::milliseconds idle_interval{1000};
  // Speculative decoding (see the top of this file); null: none. The scheduler thread
  // alone calls it.
  std::shared_ptr<Drafter> drafter;
  int32_t num_draft_tokens = 1;      // k >= 1: drafts per sequence and step, at most
  int64_t spec_max_batch = 8;        // decoding sequences above which a step does not draft
  double spec_min_acceptance = 0.3;  // acceptance EWMA below which a choice stops drafting
};

// Steps before the first probe of a choice whose acceptance fell below
// spec_min_acceptance, and the most between two probes.
inline constexpr int32_t kSpecProbeInterval = 8;
inline constexpr int32_t kSpecMaxProbeInterval = 64;

struct SchedulerStats {
  uint64_t sequence = 0;  // forward steps run so far
  int64_t running_requests = 0;
  int64_t waiting_requests = 0;
  int64_t running_sequences = 0;
  double kv_cache_usage = 0.0;  // blocks held by sequences / all blocks (cache-only
                                // prefix blocks are free on demand and not counted)
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_cached = 0;  // blocks listed in the prefix cache
  int64_t prefix_cache_hit_tokens_total = 0;
  int64_t prompt_tokens_computed_total = 0;  // prefill tokens run (recompute included)
  int64_t generated_tokens_total = 0;        // tokens sampled
  int64_t preemptions_total = 0;
  int64_t requests_finished_total = 0;
  // Speculative decoding: drafts verified, and of those accepted; by draft position
  // (index 0 = the first draft after the pending token), num_draft_tokens entries.
  int64_t spec_draft_tokens_total = 0;
  int64_t spec_accepted_tokens_total = 0;
  std::vector<int64_t> spec_draft_tokens_by_position;
  std::vector<int64_t> spec_accepted_tokens_by_position;
};

class Scheduler {
 public:
  // The engine should have EngineOptions::record_routing, else expert_load() stays zero.
  Scheduler(std::unique_ptr<Engine> engine, SchedulerOptions options);
  ~Scheduler();  // stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void start();
  // invalid_argument for a malformed request or one the whole KV cache cannot hold;
  // resource_exhausted when max_queue requests wait; unavailable when draining.
  StatusOr<std::shared_ptr<RequestStream>> submit(GenerationRequest request);

  void drain();
  bool draining() const { return draining_.load(); }
  // Nothing waiting or running.
  bool idle() const;
  // Cancels everything left and joins the thread. Idempotent.
  void stop();
  // The Status of the group hook that failed; ok while none has.
  Status failure() const;

  SchedulerStats stats() const;
  // The expert load of every step this scheduler ran (written by its thread).
  const ExpertLoadRecorder& expert_load() const { return expert_load_; }

  const model::ModelConfig& config() const { return engine_->config(); }
  // Tokens of KV the cache holds in all.
  int64_t kv_capacity_tokens() const { return kv_capacity_tokens_; }

  struct Active;  // a request being scheduled (defined in the .cpp)

 private:
  struct Planned {
    Active* request;
    int32_t choice;
    int64_t count;
    int64_t drafts = 0;  // of count, the draft tokens verified after the pending one
  };

  void loop();
  bool take_inbox(bool block, bool pause);
  void apply_cancellations();
  void plan_running(std::vector<Planned>& plan, int64_t& budget);
  void admit_waiting(std::vector<Planned>& plan, int64_t& budget);
  bool ensure_capacity(SequenceKv& seq, int64_t tokens, Active* requester);
  void preempt(Active* request);
  // False when a group hook failed (the scheduler then fails everything: fail()).
  bool run_step(const std::vector<Planned>& plan);
  // The constraint's allowance for a choice's next token into its TokenHistory; false
  // when it allows nothing (the choice is then finished with kError).
  bool constrain(Active& a, int32_t index);
  // Accepts the longest agreeing prefix of a speculating sequence's drafts (row `s` of
  // out_) and the main model's next token; streams them and rolls the KV cache back.
  void verify(const Planned& p, size_t s);
  // Appends a token to a choice, queues its event and finishes the choice on a stop
  // token or max_tokens; false when the choice finished.
  bool emit_token(Active& a, int32_t index, SampleResult r, std::vector<float> prompt_logits);
  // Gives the drafter every sequence the last forward advanced (`starts`: their KV
  // lengths before it) and keeps its drafts; its error ends the requests of the step.
  void draft_after(const std::vector<Planned>& plan, const std::vector<int64_t>& starts);
  bool speculating_step() const;
  bool tick_idle();
  void fail(Status status);
  // Ends every request left (inbox, waiting, running) with `reason`.
  void end_all(FinishReason reason, const Status& error);
  void finish_choice(Active& request, int32_t choice, FinishReason reason, Status error,
                     std::vector<GenerationEvent>& events);
  // Takes the requests whose choices all finished out of the lists.
  std::vector<std::unique_ptr<Active>> remove_finished();
  void flush_events(Active& request);
  void publish_stats();
  int64_t running_sequences() const;

  std::unique_ptr<Engine> engine_;
  SchedulerOptions options_;
  Clock* clock_;
  int64_t kv_capacity_tokens_ = 0;
  PrefixCache prefix_cache_;

  // Shared with submitters.
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Active>> inbox_;
  std::atomic<int64_t> waiting_count_{0};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_sequence_id_{0};  // DraftInput::sequence of each choice
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  bool started_ = false;

  // Scheduler thread only.
  std::deque<std::unique_ptr<Active>> waiting_;
  std::vector<std::unique_ptr<Active>> running_;  // oldest admission first
  uint64_t admissions_ = 0;
  ForwardOutput out_;
  std::vector<float> target_;  // scratch: the main model's distribution at a draft
  int64_t step_sampled_ = 0;   // tokens emitted by the step being run
  Clock::TimePoint last_group_call_{};

  // Published after each step.
  mutable std::mutex stats_mutex_;
  SchedulerStats stats_;
  Status failure_;
  // Recorded after each forward (it has its own lock).
  ExpertLoadRecorder expert_load_;
};

}  // namespace moeserve::engine
