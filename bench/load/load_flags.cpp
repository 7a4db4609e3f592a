#include "bench/load/load_flags.h"

#include <cstdio>

#include "common/flags.h"

namespace moeserve::load {
namespace {

StatusOr<Scenario> parse_scenario(const std::string& name) {
  if (name.empty()) return Scenario::kNone;
  if (name == "soak") return Scenario::kSoak;
  if (name == "overload") return Scenario::kOverload;
  if (name == "drain") return Scenario::kDrain;
  if (name == "memory") return Scenario::kMemory;
  return invalid_argument_error("--scenario: unknown scenario '" + name +
                                "' (soak, overload, drain or memory)");
}

Status positive(const std::string& flag, double value) {
  if (value > 0) return ok_status();
  return invalid_argument_error("--" + flag + " must be > 0");
}

Status at_least(const std::string& flag, int64_t value, int64_t least) {
  if (value >= least) return ok_status();
  return invalid_argument_error("--" + flag + " must be >= " + std::to_string(least));
}

Status check_url_mode(const FlagSet& set, const LoadFlags& f) {
  if (f.rate > 0 && !f.trace.empty()) {
    return invalid_argument_error("--rate and --trace exclude each other: pick one arrival source");
  }
  if (f.rate <= 0 && f.trace.empty()) {
    return invalid_argument_error(
        set.is_set("rate") ? "--rate must be > 0"
                           : "--url needs an arrival source: --rate R (Poisson) or --trace FILE");
  }
  if (set.is_set("trace-format") && f.trace.empty()) {
    return invalid_argument_error("--trace-format needs --trace");
  }
  for (const char* flag :
       {"worker", "threads", "max-num-seqs", "max-queue", "capacity-s", "capacity-rps",
        "sample-interval-s", "rss-bound-mib", "fd-bound", "overload-factor", "recovery-factor",
        "recovery-s", "sigterm-at-s", "grace-s", "prompt-bytes"}) {
    if (set.is_set(flag)) {
      return invalid_argument_error(std::string("--") + flag +
                                    " is a scenario flag: it needs --scenario");
    }
  }
  return ok_status();
}

Status check_scenario_mode(const FlagSet& set, const LoadFlags& f) {
  for (const char* flag : {"url", "rate", "trace", "trace-format", "max-requests",
                           "max-output-tokens", "concurrency-cap", "model"}) {
    if (set.is_set(flag)) {
      return invalid_argument_error(
          std::string("--") + flag +
          " drives a server of yours (--url); a scenario starts its own worker and sets it");
    }
  }
  struct Owned {
    const char* flag;
    Scenario owner;
  };
  static constexpr Owned kOwned[] = {{"sample-interval-s", Scenario::kSoak},
                                     {"rss-bound-mib", Scenario::kSoak},
                                     {"fd-bound", Scenario::kSoak},
                                     {"overload-factor", Scenario::kOverload},
                                     {"recovery-factor", Scenario::kOverload},
                                     {"recovery-s", Scenario::kOverload},
                                     {"sigterm-at-s", Scenario::kDrain},
                                     {"grace-s", Scenario::kDrain},
                                     {"prompt-bytes", Scenario::kMemory}};
  for (const Owned& o : kOwned) {
    if (set.is_set(o.flag) && f.scenario != o.owner) {
      return invalid_argument_error(std::string("--") + o.flag + " belongs to another scenario");
    }
  }
  if (f.scenario == Scenario::kMemory) {
    for (const char* flag :
         {"duration-s", "capacity-s", "capacity-rps", "prompt-tokens", "max-tokens"}) {
      if (set.is_set(flag)) {
        return invalid_argument_error(std::string("--") + flag +
                                      ": the memory scenario sends --prompt-bytes prompts only");
      }
    }
  }
  if (!set.is_set("stream") || f.stream) return ok_status();
  return invalid_argument_error("--stream=false: the scenarios stream (TTFT, mid-stream loss)");
}

}  // namespace

StatusOr<ParsedLoadFlags> parse_load_flags(const std::vector<std::string>& args,
                                           const std::string& default_worker) {
  ParsedLoadFlags out;
  LoadFlags& f = out.flags;
  std::string scenario, trace_format = "auto";
  int64_t seed = 1;
  double rss_bound_mib = 16;
  ScenarioOptions& so = f.scenario_options;
  so.worker_binary = default_worker;
  FlagSet set("bench-load (--url URL (--rate R | --trace FILE) | --scenario NAME) [flags]",
              "Open-loop load on an OpenAI-compatible server (throughput, TTFT/ITL p50/p90/p99,\n"
              "errors by kind, 429s apart), or a scenario on a tiny-model worker of its own:\n"
              "soak, overload, drain, memory (docs/serving.md, Load and soak).");
  set.add_string("url", &f.url, "server base URL, e.g. http://127.0.0.1:8000");
  set.add_double("rate", &f.rate, "Poisson arrivals per second (seeded)");
  set.add_string("trace", &f.trace, "trace file of arrivals and lengths");
  set.add_string("trace-format", &trace_format, "auto | azure | burstgpt | mooncake | csv");
  set.add_int("concurrency-cap", &f.concurrency_cap, "requests in flight at most (client side)");
  set.add_double("duration-s", &f.duration_s,
                 "run length: the soak's (1800), the overload phase's (20), the drain "
                 "run's (10); with --url a bound (60 with --rate, else the trace's)");
  set.add_int("max-requests", &f.max_requests, "requests at most (0: no bound)");
  set.add_int("prompt-tokens", &f.prompt_tokens, "prompt length in tokens (default 32)");
  set.add_int("max-tokens", &f.max_tokens, "output length in tokens, ignore_eos (default 16)");
  set.add_int("max-output-tokens", &f.max_output_tokens, "cap on a trace's output lengths");
  set.add_bool("stream", &f.stream, "stream the responses (SSE); --stream=false for one body");
  set.add_string("model", &f.model, "the model field sent (default: none)");
  set.add_int("seed", &seed, "seed of the arrivals and the prompts");
  set.add_bool("json", &f.json, "print the report as JSON");
  set.add_string("scenario", &scenario, "soak | overload | drain | memory");
  set.add_string("worker", &so.worker_binary, "moeserve-worker binary (scenarios)");
  set.add_int("threads", &so.threads, "the worker's compute threads");
  set.add_int("max-num-seqs", &so.max_num_seqs, "the worker's --max-num-seqs");
  set.add_int("max-queue", &so.max_queue, "the worker's --max-queue (429 beyond it)");
  set.add_double("capacity-s", &so.capacity_s, "length of the capacity measurement");
  set.add_double("capacity-rps", &so.capacity_rps, "known capacity, requests/s (skips measuring)");
  set.add_double("sample-interval-s", &f.soak.sample_interval_s, "soak: /proc sampling interval");
  set.add_double("rss-bound-mib", &rss_bound_mib, "soak: allowed RSS growth after warm-up");
  set.add_int("fd-bound", &f.soak.fd_bound, "soak: allowed growth of open descriptors");
  set.add_double("overload-factor", &f.overload.overload_factor, "overload: x capacity");
  set.add_double("recovery-factor", &f.overload.recovery_factor, "overload: x capacity after");
  set.add_double("recovery-s", &f.overload.recovery_s, "overload: length of the recovery");
  set.add_double("sigterm-at-s", &f.drain.sigterm_at_s, "drain: when SIGTERM is sent");
  set.add_double("grace-s", &f.drain.grace_s, "drain: the worker's shutdown grace");
  set.add_int("prompt-bytes", &f.memory.prompt_bytes, "memory: size of each prompt");
  MOESERVE_RETURN_IF_ERROR(set.parse(args));
  out.help = set.help_requested();
  out.help_text = set.help();
  if (out.help) return out;
  if (!set.positional().empty()) {
    return invalid_argument_error("unexpected argument '" + set.positional()[0] + "'");
  }
  MOESERVE_ASSIGN_OR_RETURN(f.scenario, parse_scenario(scenario));
  MOESERVE_ASSIGN_OR_RETURN(f.trace_format, sim::parse_trace_format(trace_format));
  if (seed < 0) return invalid_argument_error("--seed must be >= 0");
  f.seed = static_cast<uint64_t>(seed);
  so.seed = f.seed;
  if (set.is_set("duration-s")) MOESERVE_RETURN_IF_ERROR(positive("duration-s", f.duration_s));
  MOESERVE_RETURN_IF_ERROR(at_least("max-requests", f.max_requests, 0));
  MOESERVE_RETURN_IF_ERROR(at_least("prompt-tokens", f.prompt_tokens, 0));
  MOESERVE_RETURN_IF_ERROR(at_least("max-tokens", f.max_tokens, 0));
  MOESERVE_RETURN_IF_ERROR(at_least("max-output-tokens", f.max_output_tokens, 0));
  MOESERVE_RETURN_IF_ERROR(at_least("concurrency-cap", f.concurrency_cap, 1));
  if (f.scenario == Scenario::kNone) {
    if (f.url.empty()) {
      return invalid_argument_error("give --url URL (drive a server) or --scenario NAME");
    }
    MOESERVE_RETURN_IF_ERROR(check_url_mode(set, f));
    if (f.rate > 0 && f.duration_s == 0) f.duration_s = 60;
    return out;
  }
  MOESERVE_RETURN_IF_ERROR(check_scenario_mode(set, f));
  if (f.prompt_tokens > 0) so.prompt_tokens = f.prompt_tokens;
  if (f.max_tokens > 0) so.output_tokens = f.max_tokens;
  MOESERVE_RETURN_IF_ERROR(at_least("threads", so.threads, 1));
  MOESERVE_RETURN_IF_ERROR(at_least("max-num-seqs", so.max_num_seqs, 1));
  MOESERVE_RETURN_IF_ERROR(at_least("max-queue", so.max_queue, 0));
  MOESERVE_RETURN_IF_ERROR(positive("capacity-s", so.capacity_s));
  if (set.is_set("capacity-rps"))
    MOESERVE_RETURN_IF_ERROR(positive("capacity-rps", so.capacity_rps));
  MOESERVE_RETURN_IF_ERROR(positive("sample-interval-s", f.soak.sample_interval_s));
  MOESERVE_RETURN_IF_ERROR(positive("rss-bound-mib", rss_bound_mib));
  f.soak.rss_bound_bytes = static_cast<int64_t>(rss_bound_mib * (1 << 20));
  MOESERVE_RETURN_IF_ERROR(at_least("fd-bound", f.soak.fd_bound, 0));
  MOESERVE_RETURN_IF_ERROR(positive("overload-factor", f.overload.overload_factor));
  MOESERVE_RETURN_IF_ERROR(positive("recovery-factor", f.overload.recovery_factor));
  MOESERVE_RETURN_IF_ERROR(positive("recovery-s", f.overload.recovery_s));
  MOESERVE_RETURN_IF_ERROR(positive("sigterm-at-s", f.drain.sigterm_at_s));
  MOESERVE_RETURN_IF_ERROR(at_least("prompt-bytes", f.memory.prompt_bytes, 1));
  if (f.drain.grace_s < 0) return invalid_argument_error("--grace-s must be >= 0");
  switch (f.scenario) {
    case Scenario::kSoak:
      if (f.duration_s > 0) f.soak.duration_s = f.duration_s;
      break;
    case Scenario::kOverload:
      if (f.duration_s > 0) f.overload.overload_s = f.duration_s;
      break;
    case Scenario::kDrain:
      if (f.duration_s > 0) f.drain.load_s = f.duration_s;
      if (f.drain.sigterm_at_s >= f.drain.load_s) {
        char load_s[32];
        std::snprintf(load_s, sizeof load_s, "%g", f.drain.load_s);
        return invalid_argument_error("--sigterm-at-s must fall inside the run (--duration-s " +
                                      std::string(load_s) + ")");
      }
      break;
    default: break;
  }
  return out;
}

}  // namespace moeserve::load
