// Request traces for the autoscaling simulator: the public LLM trace formats read by
// their own headers, a plain CSV, demand scaling, and a seeded synthetic generator.
// Pure functions (the file read aside); thread-safe.
//
// Formats (the first line, or the first JSON object, identifies each under --format
// auto):
//   azure     Azure LLM inference traces: header TIMESTAMP,ContextTokens,GeneratedTokens,
//             timestamps "2023-11-16 18:17:03.9799600" (UTC, any number of decimals).
//   burstgpt  BurstGPT: header Timestamp,Model,Request tokens,Response tokens,...;
//             Timestamp in seconds from the trace start.
//   mooncake  Mooncake JSONL: one object per line with timestamp (ms),
//             input_length, output_length and optional hash_ids.
//   csv       timestamp_s,prompt_tokens,output_tokens.
// Arrival times are made relative to the first request (it arrives at 0 s). A request
// with zero output tokens (a failed call in BurstGPT) is kept with one output token:
// it still took a prefill and a first token. Bad input is invalid_argument naming the
// line: "line 7: ContextTokens: not a number: 'x'", a missing column, a time before
// the previous one, a negative time or token count.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve::sim {

struct Request {
  double arrival_s = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  friend bool operator==(const Request&, const Request&) = default;
};

enum class TraceFormat { kAuto, kAzure, kBurstGpt, kMooncake, kCsv };

// "auto", "azure", "burstgpt", "mooncake", "csv".
StatusOr<TraceFormat> parse_trace_format(std::string_view name);
std::string_view trace_format_name(TraceFormat format);

// The format `text` is in, from its first line; invalid_argument when none matches.
StatusOr<TraceFormat> detect_trace_format(std::string_view text);

StatusOr<std::vector<Request>> parse_trace(std::string_view text, TraceFormat format);
StatusOr<std::vector<Request>> read_trace_file(const std::string& path, TraceFormat format);

// The trace as the plain CSV format (for --write-trace).
std::string to_csv(const std::vector<Request>& trace);

// `factor` times the demand: each request is copied floor(factor) times, plus once
// more with probability frac(factor), every copy (the original aside) shifted by a
// uniform jitter in [-jitter_s, jitter_s] (clamped at 0); seeded, sorted by arrival.
// factor 1 returns the trace unchanged.
std::vector<Request> scale_demand(const std::vector<Request>& trace, double factor, double jitter_s,
                                  uint64_t seed);

// The synthetic traces (documented in docs/autoscaling-sim.md). Arrivals are a
// non-homogeneous Poisson process of rate
//   peak_rps x (trough + (1 - trough) x diurnal(t)) x burst(t) x on(t),
// diurnal(t) = (1 - cos(2 pi t / period_s)) / 2 (the trough at t = 0); burst(t) is
// burst_factor during bursts (bursts_per_hour on average, exponential lengths of mean
// burst_s) and 1 otherwise; on(t) is 0 during idle gaps (idle_gaps_per_hour, mean
// idle_gap_s) and 1 otherwise. Prompt lengths are log-normal (median prompt_median,
// log-sd prompt_sigma: heavy-tailed), capped at max_prompt; output lengths log-normal
// likewise.
struct SyntheticOptions {
  double duration_s = 6 * 3600;
  double peak_rps = 20;
  double trough = 0.2;
  double period_s = 6 * 3600;
  double bursts_per_hour = 0;
  double burst_factor = 2.5;
  double burst_s = 300;
  double idle_gaps_per_hour = 0;
  double idle_gap_s = 1200;
  double prompt_median = 600;
  double prompt_sigma = 1.0;
  int64_t max_prompt = 16000;
  double output_median = 150;
  double output_sigma = 0.8;
  int64_t max_output = 2000;
  uint64_t seed = 1;
};

// The named shapes: "diurnal" (smooth cycle), "bursty" (the cycle with on/off bursts),
// "onoff" (bursts and idle gaps, for scale to zero); invalid_argument otherwise.
StatusOr<SyntheticOptions> synthetic_preset(std::string_view name);
std::vector<Request> synthetic_trace(const SyntheticOptions& options);

}  // namespace moeserve::sim
