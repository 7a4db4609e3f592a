// bench-load's pure pieces: the arrival schedules, SSE scanning, the report and the
// command line.
#include <gtest/gtest.h>

#include "bench/load/arrivals.h"
#include "bench/load/completion.h"
#include "bench/load/load_flags.h"
#include "bench/load/load_report.h"
#include "bench/load/scenarios.h"

namespace moeserve::load {
namespace {

TEST(Arrivals, PoissonIsSeededSortedAndBoundedByDurationAndCount) {
  PoissonOptions p;
  p.rate_per_s = 50;
  p.duration_s = 20;
  p.prompt_tokens = 7;
  p.output_tokens = 3;
  const std::vector<sim::Request> a = poisson_schedule(p);
  EXPECT_EQ(a, poisson_schedule(p)) << "the same seed gives the same schedule";
  // 1000 expected; a Poisson count is within +-5 sd (158) except with negligible odds.
  EXPECT_GT(a.size(), 840u);
  EXPECT_LT(a.size(), 1160u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LT(a[i].arrival_s, 20);
    if (i > 0) {
      EXPECT_GE(a[i].arrival_s, a[i - 1].arrival_s);
    }
    EXPECT_EQ(a[i].prompt_tokens, 7);
    EXPECT_EQ(a[i].output_tokens, 3);
  }
  p.seed = 2;
  EXPECT_NE(a, poisson_schedule(p));
  p.max_requests = 10;
  EXPECT_EQ(poisson_schedule(p).size(), 10u);
}

TEST(Arrivals, ATraceIsCutToItsDurationAndCountAndItsLengthsOverridden) {
  const std::vector<sim::Request> trace = {{0, 100, 50}, {1, 200, 900}, {2, 300, 10}, {5, 1, 1}};
  EXPECT_EQ(limit_trace(trace, {}), trace);
  EXPECT_EQ(limit_trace(trace, {.duration_s = 2}).size(), 2u);
  EXPECT_EQ(limit_trace(trace, {.max_requests = 3}).size(), 3u);
  const auto capped = limit_trace(trace, {.max_output_tokens = 64});
  EXPECT_EQ(capped[1].output_tokens, 64);
  EXPECT_EQ(capped[2].output_tokens, 10);
  const auto fixed = limit_trace(trace, {.prompt_tokens = 8, .output_tokens = 4});
  EXPECT_EQ(fixed[1], (sim::Request{1, 8, 4}));
}

TEST(Completion, TheBodyAsksForExactLengthsWithTokenIdPrompts) {
  CompletionRequest r;
  r.prompt_tokens = 5;
  r.output_tokens = 9;
  r.model = "tiny";
  const nlohmann::json body = completion_body(r);
  ASSERT_EQ(body["prompt"].size(), 5u);
  for (const auto& id : body["prompt"]) EXPECT_LT(id.get<int64_t>(), 100);
  EXPECT_EQ(body["max_tokens"], 9);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["model"], "tiny");
  CompletionRequest other = r;
  other.prompt_seed = 1;
  EXPECT_NE(completion_body(other)["prompt"], body["prompt"]) << "seeds give distinct prompts";
}

TEST(SseScanner, ClassifiesEventsSplitAnywhere) {
  const std::string body =
      "data: {\"choices\":[{\"index\":0,\"text\":\"a\"}],\"usage\":null}\n\n"
      ": keep-alive\n\n"
      "data: {\"choices\":[{\"index\":0,\"text\":\"b\"}],\"usage\":null}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n"
      "data: [DONE]\n\n";
  using Kind = SseScanner::Kind;
  const std::vector<SseScanner::Event> expected = {
      {Kind::kToken, -1}, {Kind::kToken, -1}, {Kind::kOther, 2}, {Kind::kDone, -1}};
  for (size_t split = 0; split <= body.size(); split += 7) {
    SseScanner scanner;
    std::vector<SseScanner::Event> events = scanner.feed(body.substr(0, split));
    for (const auto& e : scanner.feed(body.substr(split))) events.push_back(e);
    EXPECT_EQ(events, expected) << "split at " << split;
  }
  SseScanner scanner;
  const auto error = scanner.feed("data: {\"error\":{\"message\":\"boom\"}}\n\n");
  ASSERT_EQ(error.size(), 1u);
  EXPECT_EQ(error[0].kind, Kind::kError);
}

CompletionResult ok(double ttft, std::vector<double> itl, int64_t tokens) {
  CompletionResult r;
  r.outcome = Outcome::kOk;
  r.http_status = 200;
  r.ttft_s = ttft;
  r.itl_s = std::move(itl);
  r.output_tokens = tokens;
  return r;
}

CompletionResult failed(Outcome outcome, int status, std::string retry_after = "") {
  CompletionResult r;
  r.outcome = outcome;
  r.http_status = status;
  r.retry_after = std::move(retry_after);
  r.error = "why";
  return r;
}

TEST(LoadReport, CountsThroughputPercentilesAndFailuresByKindWith429sApart) {
  std::vector<CompletionResult> results;
  for (int i = 1; i <= 10; ++i) results.push_back(ok(0.01 * i, {0.001 * i}, 4));
  results.push_back(failed(Outcome::kHttpStatus, 429, "1"));
  results.push_back(failed(Outcome::kHttpStatus, 429));
  results.push_back(failed(Outcome::kHttpStatus, 503));
  results.push_back(failed(Outcome::kConnection, 0));
  results.push_back(failed(Outcome::kMidStream, 200));
  const LoadReport r = summarize(results, 2.0);
  EXPECT_EQ(r.sent, 15);
  EXPECT_EQ(r.ok, 10);
  EXPECT_DOUBLE_EQ(r.requests_per_s, 5);
  EXPECT_DOUBLE_EQ(r.output_tokens_per_s, 20);
  EXPECT_DOUBLE_EQ(r.ttft_s.p50, 0.06);
  EXPECT_DOUBLE_EQ(r.ttft_s.p90, 0.10);
  EXPECT_DOUBLE_EQ(r.itl_s.p50, 0.006);
  EXPECT_EQ(r.rate_limited, 2);
  EXPECT_EQ(r.rate_limited_retry_after, 1);
  EXPECT_EQ(r.http_errors.at(503), 1);
  EXPECT_EQ(r.connection_errors, 1);
  EXPECT_EQ(r.mid_stream_errors, 1);
  EXPECT_EQ(r.failed(), 3) << "a 429 is a refusal, not a failure";
  EXPECT_EQ(r.first_error, "http_status: why");
  const nlohmann::json j = report_json(r);
  EXPECT_EQ(j["errors"]["http"]["503"], 1);
  EXPECT_EQ(j["rate_limited"], 2);
}

TEST(Windows, RequestsAreBucketedBySendTimeWithTheirOutcomes) {
  std::vector<TimedResult> run = {{0.1, 0.2, ok(0.02, {}, 1)},
                                  {0.5, 0.9, failed(Outcome::kHttpStatus, 429, "1")},
                                  {2.0, 2.5, ok(0.04, {}, 1)},
                                  {2.1, 2.6, failed(Outcome::kConnection, 0)}};
  const std::vector<Window> w = windows_of(run, 1.0);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].sent, 2);
  EXPECT_EQ(w[0].ok, 1);
  EXPECT_EQ(w[0].rate_limited, 1);
  EXPECT_DOUBLE_EQ(w[0].ttft_p50_s, 0.02);
  EXPECT_EQ(w[1].sent, 0) << "a quiet second is still a window";
  EXPECT_DOUBLE_EQ(w[2].start_s, 2);
  EXPECT_EQ(w[2].failed, 1);
}

StatusOr<ParsedLoadFlags> parse(std::vector<std::string> args) {
  return parse_load_flags(args, "/bin/moeserve-worker");
}

std::string refusal(std::vector<std::string> args) {
  StatusOr<ParsedLoadFlags> p = parse(std::move(args));
  return p.ok() ? "accepted" : p.status().message();
}

TEST(LoadFlags, UrlModeTakesExactlyOneArrivalSource) {
  StatusOr<ParsedLoadFlags> p = parse({"--url", "http://127.0.0.1:1", "--rate", "4"});
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->flags.duration_s, 60) << "a rate runs a minute unless told";
  EXPECT_EQ(refusal({"--url", "http://x"}),
            "--url needs an arrival source: --rate R (Poisson) or --trace FILE");
  EXPECT_EQ(refusal({"--url", "http://x", "--rate", "1", "--trace", "t.csv"}),
            "--rate and --trace exclude each other: pick one arrival source");
  EXPECT_EQ(refusal({"--url", "http://x", "--rate", "0"}), "--rate must be > 0");
  EXPECT_EQ(refusal({"--url", "http://x", "--rate", "1", "--concurrency-cap", "0"}),
            "--concurrency-cap must be >= 1");
  EXPECT_EQ(refusal({"--url", "http://x", "--rate", "1", "--max-queue", "4"}),
            "--max-queue is a scenario flag: it needs --scenario");
  EXPECT_EQ(refusal({"--rate", "1"}), "give --url URL (drive a server) or --scenario NAME");
  EXPECT_NE(refusal({"--url", "http://x", "--trace", "t", "--trace-format", "nope"}), "accepted");
}

TEST(LoadFlags, ScenariosRefuseWhatTheyWouldIgnore) {
  StatusOr<ParsedLoadFlags> soak = parse({"--scenario", "soak", "--duration-s", "120"});
  ASSERT_TRUE(soak.ok()) << soak.status().message();
  EXPECT_EQ(soak->flags.soak.duration_s, 120);
  EXPECT_EQ(soak->flags.scenario_options.worker_binary, "/bin/moeserve-worker");
  EXPECT_EQ(refusal({"--scenario", "soak", "--rate", "3"}),
            "--rate drives a server of yours (--url); a scenario starts its own worker and sets "
            "it");
  EXPECT_EQ(refusal({"--scenario", "soak", "--sigterm-at-s", "3"}),
            "--sigterm-at-s belongs to another scenario");
  EXPECT_EQ(refusal({"--scenario", "drain", "--duration-s", "4", "--sigterm-at-s", "5"}),
            "--sigterm-at-s must fall inside the run (--duration-s 4)");
  EXPECT_EQ(refusal({"--scenario", "memory", "--duration-s", "4"}),
            "--duration-s: the memory scenario sends --prompt-bytes prompts only");
  EXPECT_EQ(refusal({"--scenario", "flood"}),
            "--scenario: unknown scenario 'flood' (soak, overload, drain or memory)");
  EXPECT_EQ(refusal({"--scenario", "overload", "--stream=false"}),
            "--stream=false: the scenarios stream (TTFT, mid-stream loss)");
  EXPECT_EQ(refusal({"--scenario", "overload", "extra"}), "unexpected argument 'extra'");
}

}  // namespace
}  // namespace moeserve::load
