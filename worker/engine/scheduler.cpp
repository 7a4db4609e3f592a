#include "worker/engine/scheduler.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "common/log.h"

namespace moeserve::engine {
namespace {

int64_t blocks_for(int64_t tokens) { return (tokens + kBlockSize - 1) / kBlockSize; }

// Keeps a choice's draft stream apart from its sampling stream (Sampler::rng()).
constexpr uint64_t kDraftSeedSalt = 0x6472616674737472ull;
// Weight of the latest step in a choice's acceptance EWMA.
constexpr double kAcceptanceEwmaWeight = 0.5;

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "";
}

// ---------------------------------------------------------------- RequestStream

RequestStream::RequestStream(int32_t n, int64_t prompt_tokens, Clock::TimePoint submitted)
    : n_(n),
      prompt_tokens_(prompt_tokens),
      submitted_(submitted),
      stopped_(new std::atomic<bool>[static_cast<size_t>(n)]) {
  for (int32_t i = 0; i < n; ++i) stopped_[i].store(false);
}

std::vector<GenerationEvent> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty() || finished_read_ == n_; });
  std::vector<GenerationEvent> out(std::make_move_iterator(events_.begin()),
                                   std::make_move_iterator(events_.end()));
  events_.clear();
  for (const GenerationEvent& e : out) {
    if (e.finish != FinishReason::kNone) ++finished_read_;
  }
  return out;
}

void RequestStream::cancel() { cancelled_.store(true); }

void RequestStream::stop_choice(int32_t choice) {
  if (choice >= 0 && choice < n_) stopped_[choice].store(true);
}

bool RequestStream::choice_stopped(int32_t choice) const { return stopped_[choice].load(); }

bool RequestStream::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_read_ == n_;
}

void RequestStream::push(std::vector<GenerationEvent> events) {
  if (events.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (GenerationEvent& e : events) events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------- Scheduler state

struct Choice {
  SequenceKv kv;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t generated = 0;
  Sampler sampler;
  bool finished = false;
  bool wait_for_fork = false;  // choices > 0 start from choice 0's prompt KV
  // Speculative decoding.
  uint64_t id = 0;              // DraftInput::sequence
  Rng draft_rng;                // the drafter's draws
  Draft draft;                  // proposed to follow tokens.back(), for the next step
  std::vector<int32_t> verify;  // this step's input when it speculates: pending, drafts
  double acceptance = 1.0;      // EWMA of the accepted fraction of its drafts
  int32_t steps_since_probe = 0;
  int32_t probe_interval = kSpecProbeInterval;  // doubles with every probe that stays low
  // Constrained decoding: the choice's place in the grammar and its current allowance.
  std::optional<structured::TokenMatcher> matcher;
  std::shared_ptr<const structured::TokenMask> mask;
  TokenAllowance allowance;

  Choice(std::vector<int32_t> prompt, const SamplingParams& params, uint64_t sequence,
         const std::shared_ptr<structured::TokenConstraint>& constraint)
      : tokens(std::move(prompt)),
        sampler(params),
        id(sequence),
        draft_rng(params.seed ^ kDraftSeedSalt) {
    if (constraint != nullptr) matcher.emplace(constraint);
  }
};

namespace {

// The choice's history, with its constraint's allowance when it has one (filled by
// Scheduler::constrain()).
TokenHistory history(const Choice& c) {
  return {c.tokens, c.generated, c.matcher.has_value() ? &c.allowance : nullptr};
}

// The per-choice half of the per-step switch: a choice whose drafts were mostly
// rejected drafts again only after kSpecProbeInterval steps, then after twice as many
// after each probe that stays low (up to kSpecMaxProbeInterval), so that its acceptance
// is measured again while verification costs a vanishing share of the steps.
bool wants_drafts(Choice& c, double min_acceptance) {
  if (c.acceptance >= min_acceptance) {
    c.probe_interval = kSpecProbeInterval;
    return true;
  }
  if (++c.steps_since_probe < c.probe_interval) return false;
  c.steps_since_probe = 0;
  c.probe_interval = std::min(2 * c.probe_interval, kSpecMaxProbeInterval);
  return true;
}

// A drafter's answer to one input: at most max_draft tokens inside the vocabulary and,
// when it gives any q, one vocabulary-sized q per token.
Status check_draft(const Drafter& drafter, const DraftInput& in, const Draft* draft,
                   int64_t vocab) {
  const std::string who = "drafter " + std::string(drafter.name()) + ": ";
  if (draft == nullptr) return internal_error(who + "returned fewer drafts than inputs");
  if (static_cast<int64_t>(draft->tokens.size()) > in.max_draft) {
    return internal_error(who + "proposed " + std::to_string(draft->tokens.size()) +
                          " tokens where at most " + std::to_string(in.max_draft) +
                          " were asked for");
  }
  for (int32_t t : draft->tokens) {
    if (t < 0 || t >= vocab) {
      return internal_error(who + "proposed token " + std::to_string(t) +
                            " outside the vocabulary");
    }
  }
  if (draft->probs.empty()) return ok_status();
  if (draft->probs.size() != draft->tokens.size()) {
    return internal_error(who + "gave " + std::to_string(draft->probs.size()) +
                          " distributions for " + std::to_string(draft->tokens.size()) + " tokens");
  }
  for (const std::vector<float>& q : draft->probs) {
    if (static_cast<int64_t>(q.size()) != vocab) {
      return internal_error(who + "gave a distribution of " + std::to_string(q.size()) +
                            " entries for a vocabulary of " + std::to_string(vocab));
    }
  }
  return ok_status();
}

}  // namespace

struct Scheduler::Active {
  std::shared_ptr<RequestStream> stream;
  int64_t prompt_size = 0;
  int64_t max_tokens = 0;
  bool return_prompt_logits = false;
  std::vector<Choice> choices;
  uint64_t order = 0;
  bool admitted_once = false;
  // Events of this step, pushed to the stream together.
  std::vector<GenerationEvent> pending;

  bool all_finished() const {
    return std::all_of(choices.begin(), choices.end(), [](const Choice& c) { return c.finished; });
  }
  int64_t live_choices() const {
    return std::count_if(choices.begin(), choices.end(),
                         [](const Choice& c) { return !c.finished; });
  }
};

Scheduler::Scheduler(std::unique_ptr<Engine> engine, SchedulerOptions options)
    : engine_(std::move(engine)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::instance()),
      kv_capacity_tokens_(engine_->kv_cache().num_blocks() * kBlockSize),
      prefix_cache_(engine_->kv_cache()),
      expert_load_(engine_->config()) {
  stats_.kv_blocks_total = engine_->kv_cache().num_blocks();
  if (options_.drafter != nullptr) {
    stats_.spec_draft_tokens_by_position.assign(options_.num_draft_tokens, 0);
    stats_.spec_accepted_tokens_by_position.assign(options_.num_draft_tokens, 0);
  }
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { loop(); });
}

StatusOr<std::shared_ptr<RequestStream>> Scheduler::submit(GenerationRequest request) {
  if (request.prompt.empty()) return invalid_argument_error("the prompt has no tokens");
  const int64_t vocab = engine_->config().vocab_size;
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= vocab) {
      return invalid_argument_error("prompt token " + std::to_string(t) +
                                    " is outside the vocabulary [0, " + std::to_string(vocab) +
                                    ")");
    }
  }
  if (request.max_tokens < 1) return invalid_argument_error("max_tokens must be at least 1");
  if (request.n < 1) return invalid_argument_error("n must be at least 1");
  if (request.n > options_.max_num_seqs) {
    return invalid_argument_error("n = " + std::to_string(request.n) + " exceeds max-num-seqs " +
                                  std::to_string(options_.max_num_seqs));
  }
  MOESERVE_RETURN_IF_ERROR(validate(request.sampling));
  for (const auto& bias : request.sampling.logit_bias) {
    if (bias.first >= vocab) {
      return invalid_argument_error("logit_bias: token id " + std::to_string(bias.first) +
                                    " is outside the vocabulary [0, " + std::to_string(vocab) +
                                    ")");
    }
  }
  if (request.sampling.min_tokens > request.max_tokens) {
    return invalid_argument_error("min_tokens (" + std::to_string(request.sampling.min_tokens) +
                                  ") must not exceed max_tokens (" +
                                  std::to_string(request.max_tokens) + ")");
  }
  if (request.constraint != nullptr && request.sampling.stop_token_ids.empty()) {
    return invalid_argument_error(
        "a constrained request needs stop tokens: they are how its output ends");
  }
  if (request.constraint != nullptr && request.sampling.min_tokens > 0) {
    return invalid_argument_error(
        "min_tokens cannot be combined with a constraint: the output may be complete before");
  }
  const int64_t prompt_size = static_cast<int64_t>(request.prompt.size());
  const int64_t needed = request.n * blocks_for(prompt_size + request.max_tokens);
  if (needed > engine_->kv_cache().num_blocks()) {
    return invalid_argument_error(
        "the request needs up to " + std::to_string(needed) + " KV blocks (" +
        std::to_string(request.n) + " x " + std::to_string(prompt_size + request.max_tokens) +
        " tokens) but the whole cache has " + std::to_string(engine_->kv_cache().num_blocks()));
  }
  if (draining_.load()) {
    const Status failed = failure();
    return unavailable_error(failed.ok() ? "the worker is draining"
                                         : "the expert-parallel group failed: " + failed.message());
  }

  auto active = std::make_unique<Active>();
  active->stream = std::make_shared<RequestStream>(request.n, prompt_size, clock_->now());
  active->prompt_size = prompt_size;
  active->max_tokens = request.max_tokens;
  active->return_prompt_logits = request.return_prompt_logits;
  for (int32_t i = 0; i < request.n; ++i) {
    SamplingParams params = request.sampling;
    params.seed += static_cast<uint64_t>(i);
    active->choices.emplace_back(request.prompt, params, next_sequence_id_.fetch_add(1) + 1,
                                 request.constraint);
    active->choices.back().wait_for_fork = i > 0;
  }
  std::shared_ptr<RequestStream> stream = active->stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_count_.load() >= options_.max_queue) {
      return resource_exhausted_error("the queue is full (" + std::to_string(options_.max_queue) +
                                      " requests waiting)");
    }
    waiting_count_.fetch_add(1);
    inbox_.push_back(std::move(active));
  }
  cv_.notify_all();
  return stream;
}

void Scheduler::drain() { draining_.store(true); }

bool Scheduler::idle() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_.running_requests == 0 && waiting_count_.load() == 0;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whatever is left (never admitted, or the thread never ran) ends as cancelled.
  end_all(FinishReason::kCancelled, {});
}

void Scheduler::end_all(FinishReason reason, const Status& error) {
  take_inbox(false, false);
  std::vector<std::unique_ptr<Active>> left;
  for (auto& a : running_) left.push_back(std::move(a));
  for (auto& a : waiting_) left.push_back(std::move(a));
  for (auto& a : left) {
    for (int32_t i = 0; i < static_cast<int32_t>(a->choices.size()); ++i) {
      finish_choice(*a, i, reason, error, a->pending);
    }
  }
  running_.clear();
  waiting_.clear();
  waiting_count_.store(0);
  publish_stats();
  for (auto& a : left) flush_events(*a);
}

Status Scheduler::failure() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return failure_;
}

void Scheduler::fail(Status status) {
  log::error("scheduler: the expert-parallel group failed; ending every request",
             {{"error", status.to_string()}});
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    failure_ = status;
  }
  draining_.store(true);
  end_all(FinishReason::kError, status);
}

bool Scheduler::tick_idle() {
  if (!options_.idle) return true;
  const Clock::TimePoint now = clock_->now();
  if (now - last_group_call_ < options_.idle_interval) return true;
  last_group_call_ = now;
  if (Status s = options_.idle(); !s.ok()) {
    fail(std::move(s));
    return false;
  }
  return true;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  SchedulerStats s = stats_;
  s.waiting_requests = waiting_count_.load();
  return s;
}

// ---------------------------------------------------------------- the loop

bool Scheduler::take_inbox(bool block, bool pause) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto ready = [&] { return !inbox_.empty() || stopping_.load(); };
  if (block && options_.idle) {  // wake up for the group's idle hook
    cv_.wait_for(lock, options_.idle_interval, ready);
  } else if (block) {
    cv_.wait(lock, ready);
  } else if (pause) {  // nothing could run: wait for a change rather than spin
    cv_.wait_for(lock, std::chrono::milliseconds(2), ready);
  }
  for (auto& a : inbox_) waiting_.push_back(std::move(a));
  inbox_.clear();
  return !stopping_.load();
}

void Scheduler::loop() {
  bool stalled = false;
  last_group_call_ = clock_->now();
  while (true) {
    const bool nothing_to_do = running_.empty() && waiting_.empty();
    if (!take_inbox(nothing_to_do, stalled)) break;
    apply_cancellations();
    std::vector<Planned> plan;
    int64_t budget = options_.max_num_batched_tokens;
    plan_running(plan, budget);
    admit_waiting(plan, budget);
    if (!(plan.empty() ? tick_idle() : run_step(plan))) return;  // the group failed
    stalled = plan.empty();
    // Stats first, then events: a reader that saw a request end sees its blocks freed.
    std::vector<std::unique_ptr<Active>> finished = remove_finished();
    publish_stats();
    for (auto& a : running_) flush_events(*a);
    for (auto& a : finished) flush_events(*a);
    for (auto& a : waiting_) flush_events(*a);
  }
}

void Scheduler::finish_choice(Active& request, int32_t choice, FinishReason reason, Status error,
                              std::vector<GenerationEvent>& events) {
  Choice& c = request.choices[choice];
  if (c.finished) return;
  c.finished = true;
  engine_->kv_cache().release(c.kv);
  if (options_.drafter != nullptr) options_.drafter->release(c.id);
  c.draft = {};
  GenerationEvent e;
  e.choice = choice;
  e.finish = reason;
  e.error = std::move(error);
  events.push_back(std::move(e));
}

void Scheduler::apply_cancellations() {
  auto apply = [&](Active& a) {
    for (int32_t i = 0; i < static_cast<int32_t>(a.choices.size()); ++i) {
      if (a.choices[i].finished) continue;
      if (a.stream->cancelled()) {
        finish_choice(a, i, FinishReason::kCancelled, {}, a.pending);
      } else if (a.stream->choice_stopped(i)) {
        finish_choice(a, i, FinishReason::kStop, {}, a.pending);
      }
    }
    // A choice waiting for a fork from a finished choice 0 computes its own prompt.
    if (a.choices[0].finished) {
      for (Choice& c : a.choices) c.wait_for_fork = false;
    }
  };
  for (auto& a : running_) apply(*a);
  for (auto& a : waiting_) apply(*a);
}

void Scheduler::flush_events(Active& request) {
  request.stream->push(std::move(request.pending));
  request.pending.clear();
}

std::vector<std::unique_ptr<Scheduler::Active>> Scheduler::remove_finished() {
  std::vector<std::unique_ptr<Active>> finished;
  int64_t removed_waiting = 0;
  auto take = [&](auto& list, bool waiting) {
    for (auto& a : list) {
      if (!a->all_finished()) continue;
      removed_waiting += waiting ? 1 : 0;
      finished.push_back(std::move(a));
    }
    std::erase_if(list, [](const std::unique_ptr<Active>& a) { return a == nullptr; });
  };
  take(running_, false);
  take(waiting_, true);
  waiting_count_.fetch_sub(removed_waiting);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.requests_finished_total += static_cast<int64_t>(finished.size());
  return finished;
}

int64_t Scheduler::running_sequences() const {
  int64_t n = 0;
  for (const auto& a : running_) n += a->live_choices();
  return n;
}

bool Scheduler::ensure_capacity(SequenceKv& seq, int64_t tokens, Active* requester) {
  KvCache& cache = engine_->kv_cache();
  while (true) {
    const int64_t missing = blocks_for(tokens) - static_cast<int64_t>(seq.blocks.size());
    if (missing <= 0) return true;
    if (missing > cache.num_free_blocks()) {
      prefix_cache_.evict(missing - cache.num_free_blocks());
    }
    if (missing <= cache.num_free_blocks()) return cache.reserve(seq, tokens).ok();
    Active* victim = running_.back().get();
    preempt(victim);
    if (victim == requester) return false;
  }
}

void Scheduler::preempt(Active* request) {
  for (Choice& c : request->choices) {
    engine_->kv_cache().release(c.kv);
    if (options_.drafter != nullptr) options_.drafter->release(c.id);
    c.draft = {};
    if (!request->choices[0].finished && &c != &request->choices[0] && c.generated == 0) {
      c.wait_for_fork = true;
    }
  }
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& a) { return a.get() == request; });
  std::unique_ptr<Active> owned = std::move(*it);
  running_.erase(it);
  waiting_.push_front(std::move(owned));
  waiting_count_.fetch_add(1);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  ++stats_.preemptions_total;
  log::debug("scheduler: preempted the newest request to free KV blocks",
             {{"running", static_cast<int64_t>(running_.size())}});
}

bool Scheduler::speculating_step() const {
  return options_.drafter != nullptr && running_sequences() <= options_.spec_max_batch;
}

void Scheduler::plan_running(std::vector<Planned>& plan, int64_t& budget) {
  const bool speculate = speculating_step();
  for (size_t r = 0; r < running_.size() && budget > 0; ++r) {
    Active* a = running_[r].get();
    const size_t plan_start = plan.size();
    bool preempted = false;
    for (int32_t i = 0; i < static_cast<int32_t>(a->choices.size()) && budget > 0; ++i) {
      Choice& c = a->choices[i];
      if (c.finished || c.wait_for_fork) continue;
      const int64_t remaining = static_cast<int64_t>(c.tokens.size()) - c.kv.length;
      int64_t count = std::min(remaining, budget);
      if (count <= 0) continue;
      int64_t drafts = 0;
      if (speculate && remaining == 1 && c.generated > 0) {
        drafts = std::min({static_cast<int64_t>(c.draft.tokens.size()), budget - 1,
                           a->max_tokens - c.generated - 1});
        drafts = std::max<int64_t>(drafts, 0);
        // Drafts are an optimisation: never preempt anyone to make room for them.
        const int64_t missing =
            blocks_for(c.kv.length + count + drafts) - static_cast<int64_t>(c.kv.blocks.size());
        const int64_t free = engine_->kv_cache().num_free_blocks();
        if (missing > free && missing > free + prefix_cache_.num_evictable()) drafts = 0;
        count += drafts;
      }
      if (!ensure_capacity(c.kv, c.kv.length + count, a)) {
        preempted = true;
        break;
      }
      plan.push_back({a, i, count, drafts});
      budget -= count;
    }
    if (preempted) {  // `a` was the newest and is back in the queue
      for (size_t p = plan_start; p < plan.size(); ++p) budget += plan[p].count;
      plan.resize(plan_start);
      break;
    }
  }
}

void Scheduler::admit_waiting(std::vector<Planned>& plan, int64_t& budget) {
  KvCache& cache = engine_->kv_cache();
  while (!waiting_.empty() && budget > 0) {
    Active* a = waiting_.front().get();
    const int64_t seqs = a->live_choices();
    if (running_sequences() + seqs > options_.max_num_seqs) break;
    std::vector<Planned> chunks;
    int64_t chunk_budget = budget;
    int64_t hits = 0;
    bool fits = true;
    for (int32_t i = 0; i < static_cast<int32_t>(a->choices.size()) && chunk_budget > 0; ++i) {
      Choice& c = a->choices[i];
      if (c.finished || c.wait_for_fork) continue;
      const int64_t total = static_cast<int64_t>(c.tokens.size());
      if (options_.prefix_caching && c.kv.blocks.empty()) {
        // Keep at least one token to run: its logits give the next token.
        hits += prefix_cache_.attach(c.tokens, total - 1, c.kv);
      }
      const int64_t count = std::min(total - c.kv.length, chunk_budget);
      const int64_t missing =
          blocks_for(c.kv.length + count) - static_cast<int64_t>(c.kv.blocks.size());
      if (missing > cache.num_free_blocks() + prefix_cache_.num_evictable()) {
        fits = false;
        break;
      }
      if (missing > cache.num_free_blocks()) prefix_cache_.evict(missing - cache.num_free_blocks());
      if (!cache.reserve(c.kv, c.kv.length + count).ok()) {
        fits = false;
        break;
      }
      chunks.push_back({a, i, count});
      chunk_budget -= count;
    }
    if (!fits) {  // wait until running requests free blocks
      for (Choice& c : a->choices) cache.release(c.kv);
      break;
    }
    budget = chunk_budget;
    plan.insert(plan.end(), chunks.begin(), chunks.end());
    if (!a->admitted_once) {
      a->admitted_once = true;
      a->stream->cached_prompt_tokens_.store(hits);
      a->stream->queue_seconds_.store(
          std::chrono::duration<double>(clock_->now() - a->stream->submitted()).count());
    }
    {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      stats_.prefix_cache_hit_tokens_total += hits;
    }
    a->order = ++admissions_;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    waiting_count_.fetch_sub(1);
  }
}

bool Scheduler::run_step(const std::vector<Planned>& plan) {
  std::vector<SequenceInput> batch;
  batch.reserve(plan.size());
  std::vector<int64_t> starts;  // each sequence's KV length before the forward
  starts.reserve(plan.size());
  int64_t prefill_tokens = 0;
  const bool hidden = options_.drafter != nullptr && options_.drafter->needs_hidden();
  for (const Planned& p : plan) {
    Choice& c = p.request->choices[p.choice];
    std::span<const int32_t> input(c.tokens.data() + c.kv.length, p.count);
    if (p.drafts > 0) {
      c.verify.assign(1, c.tokens.back());
      c.verify.insert(c.verify.end(), c.draft.tokens.begin(), c.draft.tokens.begin() + p.drafts);
      input = c.verify;
    }
    batch.push_back(SequenceInput{&c.kv, input, p.drafts > 0, hidden});
    starts.push_back(c.kv.length);
    if (c.generated == 0 || (p.count > 1 && p.drafts == 0)) prefill_tokens += p.count;
  }
  if (options_.before_forward) {
    last_group_call_ = clock_->now();
    if (Status s = options_.before_forward(); !s.ok()) {
      fail(std::move(s));
      return false;
    }
  }
  const Status status = engine_->forward(batch, &out_);
  if (!status.ok() && options_.before_forward) {  // a collective failed inside the forward
    fail(status);
    return false;
  }
  if (!status.ok()) {
    log::error("scheduler: forward failed; ending the requests of this step",
               {{"error", status.to_string()}});
    for (const Planned& p : plan) {
      Active& a = *p.request;
      for (int32_t i = 0; i < static_cast<int32_t>(a.choices.size()); ++i) {
        finish_choice(a, i, FinishReason::kError, status, a.pending);
      }
    }
    return true;
  }
  expert_load_.record(stats().sequence + 1, out_.routing);

  const int32_t vocab = static_cast<int32_t>(out_.vocab_size);
  step_sampled_ = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    Active& a = *plan[s].request;
    Choice& c = a.choices[plan[s].choice];
    if (plan[s].drafts > 0) {
      verify(plan[s], s);
      continue;
    }
    if (options_.prefix_caching) prefix_cache_.insert(c.tokens, c.kv);
    if (c.kv.length < static_cast<int64_t>(c.tokens.size())) continue;  // prefill goes on

    auto sample_into = [&](int32_t index) {
      Choice& target = a.choices[index];
      if (!constrain(a, index)) return;
      SampleResult r = target.sampler.sample(out_.row(s), vocab, history(target));
      std::vector<float> prompt_logits;
      if (index == 0 && target.generated == 0 && a.return_prompt_logits) {
        prompt_logits.assign(out_.row(s), out_.row(s) + out_.vocab_size);
      }
      emit_token(a, index, std::move(r), std::move(prompt_logits));
    };
    if (plan[s].choice == 0 && c.generated == 0) {
      // The prompt is complete: the other choices start from its blocks and logits.
      for (int32_t j = 1; j < static_cast<int32_t>(a.choices.size()); ++j) {
        Choice& other = a.choices[j];
        if (!other.wait_for_fork || other.finished) continue;
        other.wait_for_fork = false;
        if (engine_->kv_cache().num_free_blocks() == 0) prefix_cache_.evict(1);
        if (engine_->kv_cache().fork(c.kv, c.kv.length, other.kv).ok()) sample_into(j);
      }
    }
    sample_into(plan[s].choice);
  }
  draft_after(plan, starts);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  ++stats_.sequence;
  stats_.prompt_tokens_computed_total += prefill_tokens;
  stats_.generated_tokens_total += step_sampled_;
  return true;
}

bool Scheduler::constrain(Active& a, int32_t index) {
  Choice& c = a.choices[index];
  if (!c.matcher.has_value()) return true;
  c.mask = c.matcher->allowed();
  c.allowance.allowed = *c.mask;
  c.allowance.stop_allowed = c.matcher->accepting();
  if (c.allowance.stop_allowed ||
      std::any_of(c.mask->begin(), c.mask->end(), [](uint64_t w) { return w != 0; })) {
    return true;
  }
  finish_choice(a, index, FinishReason::kError,
                internal_error("the output's grammar allows no token of this vocabulary"),
                a.pending);
  return false;
}

bool Scheduler::emit_token(Active& a, int32_t index, SampleResult r,
                           std::vector<float> prompt_logits) {
  Choice& c = a.choices[index];
  c.tokens.push_back(r.token);
  ++c.generated;
  ++step_sampled_;
  const bool stop = r.stop;
  const int32_t token = r.token;
  GenerationEvent e;
  e.choice = index;
  e.has_token = true;
  e.sample = std::move(r);
  e.prompt_logits = std::move(prompt_logits);
  a.pending.push_back(std::move(e));
  Status constrained = ok_status();
  if (!stop && c.matcher.has_value()) constrained = c.matcher->accept(token);
  if (!constrained.ok()) {
    finish_choice(a, index, FinishReason::kError, std::move(constrained), a.pending);
  } else if (stop) {
    finish_choice(a, index, FinishReason::kStop, {}, a.pending);
  } else if (c.generated >= a.max_tokens) {
    finish_choice(a, index, FinishReason::kLength, {}, a.pending);
  }
  return !c.finished;
}

void Scheduler::verify(const Planned& p, size_t s) {
  Active& a = *p.request;
  Choice& c = a.choices[p.choice];
  const int32_t vocab = static_cast<int32_t>(out_.vocab_size);
  int64_t accepted = 0;
  bool live = true;
  for (int64_t i = 0; i < p.drafts; ++i) {
    const float* row = out_.row(s, i);
    if (!constrain(a, p.choice)) {
      live = false;
      break;
    }
    // c.tokens holds the drafts accepted so far: this position's history.
    sampling_distribution(row, vocab, c.sampler.params(), history(c), &target_);
    const int32_t draft = c.draft.tokens[i];
    std::span<const float> q;
    if (!c.draft.probs.empty()) q = c.draft.probs[i];
    const DraftVerdict verdict = accept_draft(target_, draft, q, c.sampler.rng());
    live = emit_token(a, p.choice, c.sampler.result_for(row, vocab, verdict.token), {});
    if (!verdict.accepted || !live) break;
    ++accepted;
  }
  if (live && accepted == p.drafts && !constrain(a, p.choice)) live = false;
  if (live && accepted == p.drafts) {
    live = emit_token(a, p.choice, c.sampler.sample(out_.row(s, p.drafts), vocab, history(c)), {});
  }
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats_.spec_draft_tokens_total += p.drafts;
    stats_.spec_accepted_tokens_total += accepted;
    for (int64_t i = 0; i < p.drafts; ++i) {
      ++stats_.spec_draft_tokens_by_position[i];
      if (i < accepted) ++stats_.spec_accepted_tokens_by_position[i];
    }
  }
  if (!live) return;  // finished: its blocks are back already
  c.acceptance = (1.0 - kAcceptanceEwmaWeight) * c.acceptance + kAcceptanceEwmaWeight *
                                                                    static_cast<double>(accepted) /
                                                                    static_cast<double>(p.drafts);
  // The rejected drafts' positions leave the KV cache before any block is listed.
  engine_->kv_cache().truncate(c.kv, static_cast<int64_t>(c.tokens.size()) - 1);
  if (options_.prefix_caching) prefix_cache_.insert(c.tokens, c.kv);
}

void Scheduler::draft_after(const std::vector<Planned>& plan, const std::vector<int64_t>& starts) {
  Drafter* drafter = options_.drafter.get();
  if (drafter == nullptr) return;
  const bool speculate_next = speculating_step();
  std::vector<DraftInput> inputs;
  std::vector<Planned> owners;
  for (size_t s = 0; s < plan.size(); ++s) {
    Choice& c = plan[s].request->choices[plan[s].choice];
    if (c.finished) continue;
    DraftInput in;
    in.sequence = c.id;
    in.tokens = c.tokens;
    in.committed = c.kv.length;
    in.hidden_from = starts[s];
    if (drafter->needs_hidden()) in.hidden = out_.hidden_row(s, 0);
    const bool decoding = static_cast<int64_t>(c.tokens.size()) == c.kv.length + 1;
    if (decoding && speculate_next && wants_drafts(c, options_.spec_min_acceptance)) {
      in.max_draft = static_cast<int32_t>(std::min<int64_t>(
          options_.num_draft_tokens, plan[s].request->max_tokens - c.generated - 1));
    }
    in.sampling = &c.sampler.params();
    in.rng = &c.draft_rng;
    inputs.push_back(in);
    owners.push_back(plan[s]);
  }
  std::vector<Draft> drafts;
  Status status = drafter->step(inputs, &drafts);
  for (size_t i = 0; i < inputs.size() && status.ok(); ++i) {
    status = check_draft(*drafter, inputs[i], i < drafts.size() ? &drafts[i] : nullptr,
                         engine_->config().vocab_size);
  }
  if (!status.ok()) {
    log::error("scheduler: the drafter failed; ending the requests of this step",
               {{"drafter", std::string(drafter->name())}, {"error", status.to_string()}});
    for (const Planned& p : owners) {
      for (int32_t i = 0; i < static_cast<int32_t>(p.request->choices.size()); ++i) {
        finish_choice(*p.request, i, FinishReason::kError, status, p.request->pending);
      }
    }
    return;
  }
  for (size_t i = 0; i < owners.size(); ++i) {
    owners[i].request->choices[owners[i].choice].draft = std::move(drafts[i]);
  }
}

void Scheduler::publish_stats() {
  const KvCache& cache = engine_->kv_cache();
  const int64_t evictable = prefix_cache_.num_evictable();
  const int64_t held = cache.num_blocks() - cache.num_free_blocks() - evictable;
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.running_requests = static_cast<int64_t>(running_.size());
  stats_.running_sequences = running_sequences();
  stats_.kv_cache_usage = static_cast<double>(held) / static_cast<double>(cache.num_blocks());
  stats_.kv_blocks_cached = prefix_cache_.num_cached();
}

}  // namespace moeserve::engine
