// The simulator's trace parsers (bench/sim/trace.h): detect_trace_format, then
// parse_trace under the detected format and under each explicit one. An accepted trace
// starts at 0 s, never goes back in time, has no negative token counts and at least one
// output token per request, and survives the CSV round trip: parse_trace(to_csv(t),
// csv) == t, arrival times to the millisecond to_csv keeps.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench/sim/trace.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using moeserve::sim::Request;
using moeserve::sim::TraceFormat;

void check_trace(const std::vector<Request>& trace) {
  FUZZ_CHECK(!trace.empty(), "an accepted trace is empty");
  FUZZ_CHECK(trace.front().arrival_s == 0, "the first request does not arrive at 0 s");
  for (size_t i = 0; i < trace.size(); ++i) {
    const Request& r = trace[i];
    FUZZ_CHECK(std::isfinite(r.arrival_s) && r.arrival_s >= 0, std::to_string(r.arrival_s));
    FUZZ_CHECK(i == 0 || r.arrival_s >= trace[i - 1].arrival_s, "arrivals go back in time");
    FUZZ_CHECK(r.prompt_tokens >= 0, std::to_string(r.prompt_tokens));
    FUZZ_CHECK(r.output_tokens >= 1, std::to_string(r.output_tokens));
  }
  const std::string csv = moeserve::sim::to_csv(trace);
  moeserve::StatusOr<std::vector<Request>> again =
      moeserve::sim::parse_trace(csv, TraceFormat::kCsv);
  FUZZ_CHECK(again.ok(), again.status().message() + " in " + csv.substr(0, 200));
  FUZZ_CHECK(again->size() == trace.size(), "the CSV round trip lost requests");
  for (size_t i = 0; i < trace.size(); ++i) {
    const Request& a = trace[i];
    const Request& b = (*again)[i];
    FUZZ_CHECK(a.prompt_tokens == b.prompt_tokens && a.output_tokens == b.output_tokens,
               "token counts changed in the CSV round trip");
    // to_csv writes milliseconds; both traces are relative to a first arrival of 0.
    const double tolerance = 0.0005 + 1e-12 * std::fabs(a.arrival_s);
    FUZZ_CHECK(std::fabs(a.arrival_s - b.arrival_s) <= tolerance,
               std::to_string(a.arrival_s) + " became " + std::to_string(b.arrival_s));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  moeserve::StatusOr<TraceFormat> detected = moeserve::sim::detect_trace_format(text);
  if (detected.ok()) FUZZ_CHECK(*detected != TraceFormat::kAuto, "detected format auto");
  for (TraceFormat format : {TraceFormat::kAuto, TraceFormat::kAzure, TraceFormat::kBurstGpt,
                             TraceFormat::kMooncake, TraceFormat::kCsv}) {
    moeserve::StatusOr<std::vector<Request>> trace = moeserve::sim::parse_trace(text, format);
    if (format == TraceFormat::kAuto && !detected.ok()) FUZZ_CHECK(!trace.ok(), "undetected");
    if (trace.ok()) check_trace(*trace);
  }
  return 0;
}
