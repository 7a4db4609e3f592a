// A 2-rank `moeserve-worker serve` group losing rank 1 in the middle of a streamed
// completion, at a random decode step: SIGKILL (its connections close) and SIGSTOP (it
// hangs with its connections open). Invariants: rank 0 notices within the collective
// timeout (bounded generously for a loaded machine), the client's stream ends with an
// error event and never carries a finish_reason, rank 0 exits non-zero, and a restarted
// group answers exactly what the group answered before. The decode step is drawn from a
// printed seed; MOESERVE_FAULT_SEED replays it, MOESERVE_FAULT_ITERATIONS=N runs N.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common/http_client.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve {
namespace {

using namespace std::chrono_literals;
using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::read_file;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using nlohmann::json;

constexpr int64_t kCollectiveTimeoutMs = 2000;

struct Group {
  std::unique_ptr<Process> rank0, rank1;
  uint16_t port = 0;
  std::string log0, log1;
};

std::unique_ptr<Process> start_rank(const std::string& model, int rank, uint16_t leader,
                                    uint16_t port, const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{moeserve::testing::bin_dir() + "/moeserve-worker", "serve",
                               "--model", model, "--port", std::to_string(port), "--threads", "1",
                               "--served-model-name", "tiny", "--precision", "bf16",
                               "--collective-timeout-ms", std::to_string(kCollectiveTimeoutMs),
                               "--rendezvous-timeout-ms", "30000"},
      log,
      std::vector<std::string>{"MOESERVE_RANK=" + std::to_string(rank), "MOESERVE_WORLD_SIZE=2",
                               "MOESERVE_LEADER_ADDR=127.0.0.1:" + std::to_string(leader)});
}

int readyz(uint16_t port) {
  auto r = http::Client().send({"GET", "http://127.0.0.1:" + std::to_string(port) + "/readyz"});
  return r.ok() ? r->status : 0;
}

Group start_group(const TempDir& dir, const std::string& model, const std::string& name) {
  Group g;
  // free_port() may hand out one port twice before anything binds it.
  std::set<uint16_t> ports;
  while (ports.size() < 3) ports.insert(free_port());
  auto it = ports.begin();
  const uint16_t leader = *it++;
  g.port = *it++;
  const uint16_t rank1_port = *it;
  g.log0 = dir.file(name + "-r0.log");
  g.log1 = dir.file(name + "-r1.log");
  g.rank1 = start_rank(model, 1, leader, rank1_port, g.log1);
  g.rank0 = start_rank(model, 0, leader, g.port, g.log0);
  EXPECT_TRUE(wait_until([&] { return readyz(g.port) == 200; }, 60s)) << read_file(g.log0);
  return g;
}

json request(const std::string& prompt, int max_tokens, bool stream) {
  return {{"model", "tiny"},  {"prompt", prompt}, {"max_tokens", max_tokens},
          {"temperature", 0}, {"stream", stream}, {"ignore_eos", true}};
}

std::string greedy_text(uint16_t port, const std::string& prompt) {
  auto r = http::Client().send({"POST",
                                "http://127.0.0.1:" + std::to_string(port) + "/v1/completions",
                                {{"Content-Type", "application/json"}},
                                request(prompt, 16, false).dump()});
  if (!r.ok() || r->status != 200) return "<failed>";
  return json::parse(r->body)["choices"][0]["text"].get<std::string>();
}

struct StreamOutcome {
  int chunks = 0;            // data events with a choice
  bool error_event = false;  // a data event with an "error" object
  bool finish_reason = false;
  bool done_marker = false;
  bool signalled = false;
  double seconds_after_signal = 0;
};

// Streams a long completion and sends `sig` to `victim` after `kill_after` chunks.
StreamOutcome stream_and_signal(uint16_t port, Process& victim, int sig, int kill_after) {
  StreamOutcome out;
  http::Client client;
  auto stream = client.open({"POST",
                             "http://127.0.0.1:" + std::to_string(port) + "/v1/completions",
                             {{"Content-Type", "application/json"}},
                             request("Once upon a time", 4000, true).dump(),
                             60000});
  EXPECT_TRUE(stream.ok()) << stream.status().to_string();
  if (!stream.ok()) return out;
  std::string buffer;
  std::chrono::steady_clock::time_point signalled_at;
  while (true) {
    auto bytes = (*stream)->read_some(30000);
    if (!bytes.ok() || bytes->empty()) break;
    buffer += *bytes;
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      std::string data = event.substr(6);
      if (data == "[DONE]") {
        out.done_marker = true;
        continue;
      }
      json body = json::parse(data, nullptr, false);
      if (body.contains("error")) out.error_event = true;
      for (const auto& choice : body.value("choices", json::array())) {
        ++out.chunks;
        if (!choice.value("finish_reason", json()).is_null()) out.finish_reason = true;
      }
      if (!out.signalled && out.chunks >= kill_after) {
        victim.signal(sig);
        out.signalled = true;
        signalled_at = std::chrono::steady_clock::now();
      }
    }
  }
  if (out.signalled) {
    out.seconds_after_signal =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled_at).count();
  }
  return out;
}

TEST(WorkerRankFault, ALostRankEndsTheStreamWithAnErrorAndARestartedGroupAnswersTheSame) {
  TempDir dir;
  const std::string model = dir.file("tiny");
  ASSERT_TRUE(fixtures::write_tiny_model(model, {}).ok());
  const uint64_t base = moeserve::testing::fault_seed(5);
  std::string reference;
  int run = 0;
  for (int iteration = 0; iteration < moeserve::testing::fault_iterations(); ++iteration) {
    for (int sig : {SIGKILL, SIGSTOP}) {
      const uint64_t seed = base + static_cast<uint64_t>(run++);
      std::mt19937_64 rng(seed);
      const int kill_after = std::uniform_int_distribution<int>(1, 24)(rng);
      std::cout << "rank fault seed " << seed << ": " << (sig == SIGKILL ? "SIGKILL" : "SIGSTOP")
                << " after chunk " << kill_after << " (replay: MOESERVE_FAULT_SEED=" << seed << ")"
                << std::endl;
      Group g = start_group(dir, model, "run" + std::to_string(run));
      const std::string before = greedy_text(g.port, "The quick brown fox");
      if (reference.empty()) reference = before;
      EXPECT_EQ(before, reference) << "a restarted group answers as the first did";

      StreamOutcome out = stream_and_signal(g.port, *g.rank1, sig, kill_after);
      ASSERT_TRUE(out.signalled) << "the stream ended before chunk " << kill_after;
      EXPECT_TRUE(out.error_event) << "the stream ends with an error event";
      EXPECT_FALSE(out.finish_reason) << "a failed stream never reports a finish_reason";
      EXPECT_LT(out.seconds_after_signal, 4 * kCollectiveTimeoutMs / 1000.0 + 10);
      const int code = g.rank0->wait(std::chrono::milliseconds(4 * kCollectiveTimeoutMs + 10000));
      EXPECT_NE(code, 0);
      EXPECT_NE(code, -1) << "rank 0 did not exit";
      EXPECT_NE(read_file(g.log0).find("lost rank 1"), std::string::npos) << read_file(g.log0);
      g.rank1->signal(SIGKILL);
      g.rank1->wait(10s);
    }
  }
  Group again = start_group(dir, model, "after");
  EXPECT_EQ(greedy_text(again.port, "The quick brown fox"), reference);
  again.rank0->signal(SIGTERM);
  EXPECT_EQ(again.rank0->wait(30s), 0);
  EXPECT_EQ(again.rank1->wait(30s), 0);
}

}  // namespace
}  // namespace moeserve
