// The command line of bench-load, parsed and checked without side effects.
//
//   bench-load --url URL (--rate R | --trace FILE [--trace-format F]) [--concurrency-cap N]
//              [--duration-s S] [--max-requests N] [--prompt-tokens N] [--max-tokens N]
//              [--stream|--stream=false] [--seed N] [--json]
//   bench-load --scenario soak|overload|drain|memory [--worker BIN] [--threads N]
//              [--max-num-seqs N] [--max-queue N] [--prompt-tokens N] [--max-tokens N]
//              [--capacity-s S | --capacity-rps R] [--duration-s S] [scenario flags]
//              [--seed N] [--json]
// Driving --url needs exactly one of --rate and --trace; with --trace, --prompt-tokens
// and --max-tokens (when given) override the trace's lengths, and --max-output-tokens
// caps them. A scenario starts its own worker and takes no --url, --rate or --trace.
// --duration-s is the soak's length (default 1800), the overload phase's (default 20)
// and the drain run's (default 10); in --url mode it bounds the run (default 60 s with
// --rate, the whole trace with --trace). Every refusal is invalid_argument naming the
// flag.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/scenarios.h"
#include "bench/sim/trace.h"
#include "common/status.h"

namespace moeserve::load {

enum class Scenario { kNone, kSoak, kOverload, kDrain, kMemory };

struct LoadFlags {
  Scenario scenario = Scenario::kNone;
  std::string url;
  double rate = 0;
  std::string trace;
  sim::TraceFormat trace_format = sim::TraceFormat::kAuto;
  int64_t concurrency_cap = 64;
  double duration_s = 0;  // 0: the mode's default (see above)
  int64_t max_requests = 0;
  int64_t prompt_tokens = 0;  // 0: 32, or the trace's
  int64_t max_tokens = 0;     // 0: 16, or the trace's
  int64_t max_output_tokens = 0;
  bool stream = true;
  uint64_t seed = 1;
  bool json = false;
  std::string model;  // the `model` field sent in --url mode ("" sends none)
  ScenarioOptions scenario_options;
  SoakOptions soak;
  OverloadOptions overload;
  DrainOptions drain;
  MemoryOptions memory;
};

struct ParsedLoadFlags {
  LoadFlags flags;
  bool help = false;
  std::string help_text;
};

// `default_worker` is the moeserve-worker next to the binary.
StatusOr<ParsedLoadFlags> parse_load_flags(const std::vector<std::string>& args,
                                           const std::string& default_worker);

}  // namespace moeserve::load
