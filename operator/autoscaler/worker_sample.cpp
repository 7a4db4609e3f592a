#include "operator/autoscaler/worker_sample.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

namespace moeserve::autoscaler {
namespace {

template <typename Int>
std::optional<Int> parse_int(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  Int value = 0;
  const char* end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end || value < 0) return std::nullopt;
  return value;
}

std::optional<double> parse_le(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  auto samples = parse_exposition("x " + *text);
  if (!samples.ok() || samples->size() != 1) return std::nullopt;
  return (*samples)[0].value;
}

// load = load * keep + the counters' increase from `before` to `now`.
void decay_add(double keep, const std::map<ExpertKey, double>& before,
               const std::map<ExpertKey, double>& now, std::map<ExpertKey, double>* load) {
  for (auto& [key, value] : *load) value *= keep;
  for (const auto& [key, count] : now) {
    auto previous = before.find(key);
    (*load)[key] += counter_increase(previous == before.end() ? 0.0 : previous->second, count);
  }
}

}  // namespace

double counter_increase(double previous, double current) {
  return current >= previous ? current - previous : current;
}

StatusOr<WorkerSample> worker_sample_from(const std::vector<Sample>& samples,
                                          EngineMetrics engine) {
  const MetricNames& names = metric_names(engine);
  const std::string prompt_name = names.prompt_tokens;
  const std::string generation_name = names.generation_tokens;
  const std::string ttft_name = names.ttft_bucket;
  const std::string waiting_name = names.requests_waiting;
  const std::string expert_name = names.expert_tokens ? names.expert_tokens : "";
  WorkerSample out;
  auto placement = [&out]() -> PlacementState& {
    if (!out.placement) out.placement.emplace();
    return *out.placement;
  };
  bool prompt = false, generation = false;
  std::map<double, double> buckets;
  for (const Sample& s : samples) {
    if (s.name == prompt_name) {
      out.prompt_tokens += s.value;
      prompt = true;
    } else if (s.name == generation_name) {
      out.generation_tokens += s.value;
      generation = true;
    } else if (s.name == waiting_name) {
      out.requests_waiting += s.value;
    } else if (s.name == ttft_name) {
      const std::optional<double> le = parse_le(s.label("le"));
      if (!le) return invalid_argument_error(ttft_name + ": bad or missing le");
      buckets[*le] += s.value;
    } else if (!expert_name.empty() && s.name == expert_name) {
      const auto layer = parse_int<int64_t>(s.label("layer"));
      const auto expert = parse_int<int32_t>(s.label("expert"));
      if (!layer || !expert) {
        return invalid_argument_error(expert_name + ": bad or missing layer/expert label");
      }
      out.expert_tokens[{*layer, *expert}] += s.value;
    } else if (s.name == kSlotTokens) {
      const auto layer = parse_int<int64_t>(s.label("layer"));
      const auto rank = parse_int<int32_t>(s.label("rank"));
      if (!layer || !rank) {
        return invalid_argument_error(std::string(kSlotTokens) +
                                      ": bad or missing layer/rank label");
      }
      out.rank_tokens[{*layer, *rank}] += s.value;
    } else if (s.name == kPlacementVersion) {
      placement().version = static_cast<int64_t>(s.value);
    } else if (s.name == kPlacementInFlight) {
      placement().in_flight_version = static_cast<int64_t>(s.value);
    } else if (s.name == kPlacementSwitchSeconds) {
      placement().switch_seconds = s.value;
    } else if (s.name == kPlacementFailure) {
      placement().failed_version = parse_int<int64_t>(s.label("version")).value_or(0);
      placement().failure = s.label("reason").value_or("");
    }
  }
  if (!prompt || !generation) {
    return invalid_argument_error("no " + prompt_name + " / " + generation_name + ": not a " +
                                  names.engine + " worker's /metrics");
  }
  out.ttft_buckets.assign(buckets.begin(), buckets.end());
  return out;
}

std::optional<double> histogram_quantile(double q,
                                         const std::vector<std::pair<double, double>>& buckets) {
  if (buckets.empty() || !std::isinf(buckets.back().first)) return std::nullopt;
  const double total = buckets.back().second;
  if (!(total > 0)) return std::nullopt;
  const double rank = q * total;
  double lower = 0, below = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto [le, count] = buckets[i];
    if (count >= rank) {
      if (std::isinf(le)) return i > 0 ? buckets[i - 1].first : 0.0;
      const double in_bucket = count - below;
      return in_bucket > 0 ? lower + (le - lower) * (rank - below) / in_bucket : le;
    }
    lower = le;
    below = count;
  }
  return std::nullopt;  // unreachable: the +Inf bucket holds the total
}

ExpertLoad expert_load_from(const std::map<ExpertKey, double>& tokens) {
  ExpertLoad out;
  for (const auto& [key, count] : tokens) {
    if (out.layers.empty() || out.layers.back() != key.first) {
      out.layers.push_back(key.first);
      out.tokens.emplace_back();
    }
    std::vector<double>& row = out.tokens.back();
    if (static_cast<int32_t>(row.size()) <= key.second) row.resize(key.second + 1, 0.0);
    row[key.second] = count;
  }
  size_t experts = 0;
  for (const auto& row : out.tokens) experts = std::max(experts, row.size());
  for (auto& row : out.tokens) row.resize(experts, 0.0);
  return out;
}

GroupWindow::GroupWindow(Clock::Duration rate_window, Clock::Duration load_window)
    : rate_window_(rate_window), load_window_(load_window) {}

void GroupWindow::add(Clock::TimePoint at, const WorkerSample& sample) {
  if (last_at_ && at <= *last_at_) return;
  std::vector<double> le;
  for (const auto& [bound, _] : sample.ttft_buckets) le.push_back(bound);
  if (!last_) {
    le_ = le;
    Point first{at, 0, std::vector<double>(le_.size(), 0.0)};
    points_.push_back(first);
  } else {
    Point next = points_.back();
    next.at = at;
    next.tokens += counter_increase(last_->prompt_tokens, sample.prompt_tokens) +
                   counter_increase(last_->generation_tokens, sample.generation_tokens);
    if (le == le_) {
      for (size_t i = 0; i < le_.size(); ++i) {
        next.ttft[i] +=
            counter_increase(last_->ttft_buckets[i].second, sample.ttft_buckets[i].second);
      }
    } else {
      // The bucket layout changed (a new worker version): start the histogram over.
      le_ = le;
      for (Point& p : points_) p.ttft.assign(le_.size(), 0.0);
      next.ttft.assign(le_.size(), 0.0);
    }
    const double dt = std::chrono::duration<double>(at - *last_at_).count();
    const double keep = std::exp(-dt / std::chrono::duration<double>(load_window_).count());
    decay_add(keep, last_->expert_tokens, sample.expert_tokens, &expert_load_);
    decay_add(keep, last_->rank_tokens, sample.rank_tokens, &rank_load_);
    points_.push_back(std::move(next));
  }
  last_ = sample;
  last_at_ = at;
  // Keep the newest point older than the window too, so a rate always spans it.
  while (points_.size() > 2 && at - points_[1].at >= rate_window_) points_.pop_front();
}

const GroupWindow::Point* GroupWindow::oldest_in_window() const {
  return points_.size() < 2 ? nullptr : &points_.front();
}

std::optional<double> GroupWindow::tokens_per_second() const {
  const Point* oldest = oldest_in_window();
  if (!oldest) return std::nullopt;
  const Point& newest = points_.back();
  const double dt = std::chrono::duration<double>(newest.at - oldest->at).count();
  if (dt <= 0) return std::nullopt;
  return (newest.tokens - oldest->tokens) / dt;
}

std::vector<std::pair<double, double>> GroupWindow::ttft_increase() const {
  std::vector<std::pair<double, double>> out;
  const Point* oldest = oldest_in_window();
  if (!oldest) return out;
  const Point& newest = points_.back();
  for (size_t i = 0; i < le_.size(); ++i) {
    out.emplace_back(le_[i], newest.ttft[i] - oldest->ttft[i]);
  }
  return out;
}

std::optional<double> GroupWindow::requests_per_second() const {
  const Point* oldest = oldest_in_window();
  if (!oldest || le_.empty() || !std::isinf(le_.back())) return std::nullopt;
  const Point& newest = points_.back();
  const double dt = std::chrono::duration<double>(newest.at - oldest->at).count();
  if (dt <= 0) return std::nullopt;
  return (newest.ttft.back() - oldest->ttft.back()) / dt;
}

}  // namespace moeserve::autoscaler
