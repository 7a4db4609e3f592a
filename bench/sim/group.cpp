#include "bench/sim/group.h"

#include <algorithm>
#include <limits>

namespace moeserve::sim {

const std::vector<double> kTtftBuckets = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06,
                                          0.08,  0.1,    0.25,  0.5,  0.75, 1.0,  2.5,
                                          5.0,   7.5,    10.0,  20.0, 40.0, 80.0};

Group::Group(const Capacity* capacity, std::vector<RequestTimes>* times, double created_s,
             double ready_s)
    : capacity_(capacity),
      times_(times),
      created_s_(created_s),
      ready_s_(ready_s),
      now_s_(ready_s),
      last_finish_s_(created_s),
      ttft_counts_(kTtftBuckets.size() + 1, 0.0) {}

void Group::enqueue(int64_t id, const Request& r, double now) {
  queue_.push_back({id, r.prompt_tokens, r.output_tokens, now});
  queued_tokens_ += static_cast<double>(r.prompt_tokens + r.output_tokens);
}

void Group::take_waiting(std::vector<int64_t>* out) {
  for (const Queued& q : queue_) out->push_back(q.id);
  queue_.clear();
  queued_tokens_ = 0;
}

double Group::outstanding_tokens() const {
  double batch = 0;
  for (const Queued& q : batch_) batch += static_cast<double>(q.prompt + q.output);
  return queued_tokens_ + batch + finish_sum_ - progress_ * static_cast<double>(running_.size());
}

bool Group::start_prefill() {
  int64_t tokens = 0;
  while (!queue_.empty()) {
    const Queued& q = queue_.front();
    const int64_t kv = q.prompt + q.output;
    const bool fits =
        kv_used_ + kv <= capacity_->kv_tokens &&
        static_cast<int64_t>(running_.size() + batch_.size()) < capacity_->max_batch &&
        (batch_.empty() || tokens + q.prompt <= capacity_->max_prefill_tokens);
    if (!fits) break;
    kv_used_ += kv;
    tokens += q.prompt;
    queued_tokens_ -= static_cast<double>(kv);
    batch_.push_back(q);
    queue_.pop_front();
  }
  if (batch_.empty()) return false;
  const double t = static_cast<double>(tokens);
  batch_end_s_ = now_s_ + (t > 0 ? t / capacity_->prefill_tokens_per_s.at(t) : 0);
  return true;
}

void Group::end_prefill() {
  now_s_ = batch_end_s_;
  for (const Queued& q : batch_) {
    RequestTimes& rt = (*times_)[q.id];
    rt.first_token_s = now_s_;
    const double ttft = now_s_ - q.arrived_s;
    const size_t bucket =
        std::lower_bound(kTtftBuckets.begin(), kTtftBuckets.end(), ttft) - kTtftBuckets.begin();
    ttft_counts_[bucket] += 1;
    prompt_tokens_total_ += static_cast<double>(q.prompt);
    generation_tokens_total_ += 1;
    if (q.output <= 1) {
      rt.finished_s = now_s_;
      last_finish_s_ = now_s_;
      kv_used_ -= q.prompt + q.output;
      continue;
    }
    const double finish = progress_ + static_cast<double>(q.output - 1);
    running_.push({finish, q.id, q.prompt + q.output});
    finish_sum_ += finish;
  }
  batch_.clear();
}

void Group::finish_decoded() {
  while (!running_.empty() && running_.top().finish_progress <= progress_ + 1e-9) {
    const Decoding d = running_.top();
    running_.pop();
    finish_sum_ -= d.finish_progress;
    kv_used_ -= d.kv_tokens;
    (*times_)[d.id].finished_s = now_s_;
    last_finish_s_ = now_s_;
  }
  if (running_.empty()) finish_sum_ = progress_ = 0;  // no drift between busy periods
}

void Group::advance(double t) {
  while (now_s_ < t) {
    if (!batch_.empty()) {
      if (batch_end_s_ > t) {
        now_s_ = t;  // decode waits for the prefill
        return;
      }
      end_prefill();
      continue;
    }
    if (start_prefill()) continue;
    if (running_.empty()) {
      now_s_ = t;
      return;
    }
    const double b = static_cast<double>(running_.size());
    const double aggregate = capacity_->decode_tokens_per_s.at(b);
    const double per_sequence = aggregate / b;
    const double next_finish =
        now_s_ + std::max(0.0, running_.top().finish_progress - progress_) / per_sequence;
    const double until = std::min(t, next_finish);
    progress_ += per_sequence * (until - now_s_);
    generation_tokens_total_ += aggregate * (until - now_s_);
    now_s_ = until;
    if (until == next_finish) {
      progress_ = running_.top().finish_progress;
      finish_decoded();
    }
  }
}

autoscaler::WorkerSample Group::sample() const {
  autoscaler::WorkerSample s;
  s.prompt_tokens = prompt_tokens_total_;
  s.generation_tokens = generation_tokens_total_;
  double cumulative = 0;
  for (size_t i = 0; i < kTtftBuckets.size(); ++i) {
    cumulative += ttft_counts_[i];
    s.ttft_buckets.emplace_back(kTtftBuckets[i], cumulative);
  }
  s.ttft_buckets.emplace_back(std::numeric_limits<double>::infinity(),
                              cumulative + ttft_counts_.back());
  s.requests_waiting = static_cast<double>(queue_.size());
  return s;
}

}  // namespace moeserve::sim
