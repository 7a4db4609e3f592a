// bench-load's scenarios in miniature on a real moeserve-worker over loopback:
// behaviour only (what was refused, lost, completed), no timing thresholds.
#include "bench/load/scenarios.h"

#include <gtest/gtest.h>

#include "tests/support/test_util.h"

namespace moeserve::load {
namespace {

ScenarioOptions small(const moeserve::testing::TempDir& dir) {
  ScenarioOptions o;
  o.worker_binary = moeserve::testing::bin_dir() + "/moeserve-worker";
  o.dir = dir.path();
  o.threads = 1;
  o.prompt_tokens = 8;
  o.output_tokens = 8;
  return o;
}

TEST(Scenarios, OverloadIsRefusedWith429AndRetryAfterThenServiceRecovers) {
  moeserve::testing::TempDir dir;
  ScenarioOptions o = small(dir);
  o.max_num_seqs = 1;
  o.max_queue = 1;
  o.capacity_rps = 20;  // far beyond what one sequence at a time serves: the queue fills
  OverloadOptions overload;
  overload.overload_factor = 5;  // 100 requests/s
  overload.overload_s = 1.5;
  overload.recovery_factor = 0.05;  // 1 request/s
  overload.recovery_s = 3;
  StatusOr<OverloadResult> r = run_overload(o, overload);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->overload.rate_limited, 0) << "a full queue refuses";
  EXPECT_EQ(r->overload.rate_limited_retry_after, r->overload.rate_limited)
      << "every 429 says when to come back";
  EXPECT_EQ(r->overload.failed(), 0) << r->overload.first_error;
  EXPECT_GT(r->overload.ok, 0) << "the admitted requests are served meanwhile";
  EXPECT_TRUE(r->worker_alive);
  EXPECT_GT(r->recovery.ok, 0);
  EXPECT_GE(r->time_to_full_service_s, 0) << "the last requests after the drop all succeed";
}

TEST(Scenarios, DrainUnderLoadLosesNoRequestInFlight) {
  moeserve::testing::TempDir dir;
  ScenarioOptions o = small(dir);
  o.max_num_seqs = 4;
  o.max_queue = 32;
  o.output_tokens = 256;  // long enough streams that some are in flight at the signal
  o.capacity_rps = 20;
  DrainOptions drain;
  drain.rate_fraction = 1;
  drain.load_s = 3;
  drain.sigterm_at_s = 1.5;
  drain.grace_s = 60;
  StatusOr<DrainResult> r = run_drain(o, drain);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->in_flight_at_sigterm, 0);
  EXPECT_EQ(r->completed_of_in_flight, r->in_flight_at_sigterm) << "every stream in flight ends";
  EXPECT_EQ(r->lost, 0);
  EXPECT_GT(r->refused_after_sigterm, 0) << "requests after the signal are turned away";
  EXPECT_EQ(r->exit_code, 0);
}

TEST(Scenarios, ASoakReportsNoFailuresAndSamplesTheWorker) {
  moeserve::testing::TempDir dir;
  ScenarioOptions o = small(dir);
  o.capacity_rps = 5;
  SoakOptions soak;
  soak.duration_s = 3;
  soak.sample_interval_s = 1;
  soak.rss_bound_bytes = 1ll << 30;  // the miniature checks the mechanics, not flatness
  soak.fd_bound = 64;
  StatusOr<SoakResult> r = run_soak(o, soak);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->report.ok, 0);
  EXPECT_EQ(r->report.failed(), 0) << r->report.first_error;
  EXPECT_GE(r->samples.size(), 2u);
  for (const ProcSample& s : r->samples) {
    EXPECT_GT(s.rss_bytes, 0);
    EXPECT_GT(s.open_fds, 2);
  }
  EXPECT_TRUE(r->passed(soak));
}

}  // namespace
}  // namespace moeserve::load
