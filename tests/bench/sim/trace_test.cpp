// The trace readers on small inline traces of each format, bad input, demand scaling
// and the synthetic generator.
#include "bench/sim/trace.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace moeserve::sim {
namespace {

std::vector<Request> parsed(std::string_view text, TraceFormat format = TraceFormat::kAuto) {
  StatusOr<std::vector<Request>> trace = parse_trace(text, format);
  EXPECT_TRUE(trace.ok()) << trace.status().to_string();
  return trace.ok() ? *trace : std::vector<Request>{};
}

std::string error_of(std::string_view text, TraceFormat format = TraceFormat::kAuto) {
  StatusOr<std::vector<Request>> trace = parse_trace(text, format);
  EXPECT_FALSE(trace.ok());
  EXPECT_EQ(trace.status().code(), StatusCode::kInvalidArgument);
  return trace.ok() ? "" : trace.status().message();
}

TEST(TraceTest, AzureByItsHeader) {
  const char* text =
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 18:17:03.9799600,4808,10\n"
      "2023-11-16 18:17:04.0319359,3180,8\n"
      "2023-11-16 18:18:00.5,110,0\n";
  EXPECT_EQ(*detect_trace_format(text), TraceFormat::kAzure);
  const std::vector<Request> t = parsed(text);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], (Request{0, 4808, 10}));
  EXPECT_NEAR(t[1].arrival_s, 0.0519759, 1e-6);
  EXPECT_NEAR(t[2].arrival_s, 56.52004, 1e-6);  // across a minute boundary
  EXPECT_EQ(t[2].output_tokens, 1) << "a zero-output request still costs a first token";
}

TEST(TraceTest, AzureAcrossMidnightAndMonths) {
  const std::vector<Request> t = parsed(
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2024-02-29 23:59:59.5,1,1\n"
      "2024-03-01 00:00:00.5,1,1\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_NEAR(t[1].arrival_s, 1.0, 1e-9);
}

TEST(TraceTest, BurstGptByItsHeader) {
  const char* text =
      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,472,18,490,Conversation log\n"
      "45,GPT-4,1087,0,1087,API log\n"
      "118,ChatGPT,417,341,758,Conversation log\n";
  EXPECT_EQ(*detect_trace_format(text), TraceFormat::kBurstGpt);
  const std::vector<Request> t = parsed(text);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], (Request{0, 472, 18}));
  EXPECT_EQ(t[1], (Request{40, 1087, 1}));
  EXPECT_EQ(t[2], (Request{113, 417, 341}));
}

TEST(TraceTest, MooncakeJsonLines) {
  const char* text =
      R"({"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]})"
      "\n"
      R"({"timestamp": 30535, "input_length": 6472, "output_length": 26})"
      "\n";
  EXPECT_EQ(*detect_trace_format(text), TraceFormat::kMooncake);
  const std::vector<Request> t = parsed(text);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0], (Request{0, 6955, 52}));
  EXPECT_NEAR(t[1].arrival_s, 3.053, 1e-9);  // milliseconds
}

TEST(TraceTest, PlainCsvRoundTrips) {
  const std::vector<Request> t =
      parsed("timestamp_s,prompt_tokens,output_tokens\n0.5,100,20\n1.25,200,30\n\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1], (Request{0.75, 200, 30}));
  EXPECT_EQ(parsed(to_csv(t)), t);
}

TEST(TraceTest, BadInputNamesTheLine) {
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens\n0,1\n", TraceFormat::kCsv),
            "line 1: missing column output_tokens (a csv trace)");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\n0,1,1\n2,1,1\n1,1,1\n"),
            "line 4: time goes backwards (the trace must be sorted by arrival)");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\n-1,1,1\n"),
            "line 2: negative time -1.000000");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\n0,x,1\n"),
            "line 2: prompt_tokens: not a token count: 'x'");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\nnow,1,1\n"),
            "line 2: timestamp_s: not a number: 'now'");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\n0,1\n"),
            "line 2: expected at least 3 fields, got 2");
  EXPECT_EQ(error_of("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n"),
            "line 2: TIMESTAMP: not a date-time: 'yesterday'");
  EXPECT_EQ(error_of("Timestamp,Model,Request tokens,Response tokens\n1,m,-5,1\n"),
            "line 2: Request tokens: negative: -5");
  EXPECT_EQ(error_of("{\"timestamp\": 1, \"input_length\": 5, \"output_length\": 1}\n{oops\n"),
            "line 2: not a JSON object");
  EXPECT_EQ(error_of("{\"timestamp\": 1, \"input_length\": 5}\n"), "line 1: missing output_length");
  EXPECT_EQ(error_of("{\"timestamp\": 1, \"input_length\": \"5\", \"output_length\": 1}\n"),
            "line 1: input_length: not a number");
  EXPECT_EQ(error_of("a,b,c\n1,2,3\n").substr(0, 30), "line 1: unknown trace header '");
  EXPECT_EQ(error_of("timestamp_s,prompt_tokens,output_tokens\n"),
            "the trace has a header but no requests");
  EXPECT_EQ(error_of(""), "the trace is empty");
  EXPECT_FALSE(parse_trace_format("parquet").ok());
}

TEST(TraceTest, DemandScaleReplicatesWithJitter) {
  const std::vector<Request> t = {{0, 10, 1}, {10, 20, 2}, {20, 30, 3}};
  EXPECT_EQ(scale_demand(t, 1, 5, 1), t);
  const std::vector<Request> doubled = scale_demand(t, 2, 1, 1);
  ASSERT_EQ(doubled.size(), 6u);
  EXPECT_TRUE(
      std::is_sorted(doubled.begin(), doubled.end(),
                     [](const Request& a, const Request& b) { return a.arrival_s < b.arrival_s; }));
  for (const Request& r : doubled) {
    const Request& source = t[static_cast<size_t>(r.prompt_tokens / 10 - 1)];
    EXPECT_LE(std::abs(r.arrival_s - source.arrival_s), 1.0);
  }
  EXPECT_EQ(scale_demand(t, 2, 1, 1), doubled) << "seeded";
  std::vector<Request> many(1000, Request{0, 1, 1});
  const size_t n = scale_demand(many, 1.5, 0, 3).size();
  EXPECT_GT(n, 1400u);
  EXPECT_LT(n, 1600u);
}

TEST(TraceTest, SyntheticShapes) {
  SyntheticOptions o = *synthetic_preset("diurnal");
  o.duration_s = 3600;
  o.period_s = 3600;
  o.peak_rps = 20;
  const std::vector<Request> t = synthetic_trace(o);
  EXPECT_EQ(synthetic_trace(o), t) << "seeded";
  // The trough is at 0 and the peak at half the period.
  auto in = [&](double from, double to) {
    return std::count_if(t.begin(), t.end(),
                         [&](const Request& r) { return r.arrival_s >= from && r.arrival_s < to; });
  };
  EXPECT_GT(in(1500, 2100), 3 * in(0, 300) + 3 * in(3300, 3600));
  // Heavy-tailed prompts: the largest is many times the median.
  std::vector<int64_t> prompts;
  for (const Request& r : t) prompts.push_back(r.prompt_tokens);
  std::sort(prompts.begin(), prompts.end());
  EXPECT_GT(prompts.back(), 8 * prompts[prompts.size() / 2]);

  SyntheticOptions onoff = *synthetic_preset("onoff");
  onoff.duration_s = 4 * 3600;
  const std::vector<Request> gaps = synthetic_trace(onoff);
  double longest = 0;
  for (size_t i = 1; i < gaps.size(); ++i) {
    longest = std::max(longest, gaps[i].arrival_s - gaps[i - 1].arrival_s);
  }
  EXPECT_GT(longest, 300) << "onoff has idle gaps";
  EXPECT_FALSE(synthetic_preset("weekly").ok());
}

}  // namespace
}  // namespace moeserve::sim
