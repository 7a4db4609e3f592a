// `moeserve-operator local` with real workers on a generated tiny model: two groups
// behind one endpoint, round-robin; a killed rank restarts its group while the other
// group keeps serving; SIGTERM stops everything and exits 0. spec.auth needs
// --api-key-file, whose keys the front door's workers then require.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

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
using namespace std::chrono_literals;

constexpr const char* kDeployment = R"(apiVersion: moeserve.io/v1alpha1
kind: ModelDeployment
metadata:
  name: local-e2e
spec:
  model:
    source: /unused
    servedModelName: tiny
  replicas: 2
  parallelism:
    expertParallel: 1
  worker:
    image: unused
)";

http::ClientResponse complete(uint16_t port) {
  http::Client client;
  auto r = client.send({"POST",
                        "http://127.0.0.1:" + std::to_string(port) + "/v1/completions",
                        {{"Content-Type", "application/json"}},
                        R"({"model":"tiny","prompt":"Hello","max_tokens":4,"temperature":0})"});
  return r.ok() ? *r : http::ClientResponse{};
}

TEST(LocalPlatform, ServesRestartsLostGroupsAndStopsCleanly) {
  TempDir dir;
  ASSERT_EQ(run_command(bin_dir() + "/moeserve-make-tiny-model --out " + dir.file("model") +
                        " --arch deepseek_v3 --precision bf16 --seed 3 2>/dev/null"),
            0);
  moeserve::testing::write_file(dir.file("md.yaml"), kDeployment);
  uint16_t port = free_port();
  uint16_t base = moeserve::testing::free_base_port(port);
  Process local({bin_dir() + "/moeserve-operator", "local", "-f", dir.file("md.yaml"), "--model",
                 dir.file("model"), "--port", std::to_string(port), "--base-port",
                 std::to_string(base), "--logs-dir", dir.path()},
                dir.file("local.log"));
  auto ready_groups = [&] {
    http::Client client;
    auto m = client.send({"GET", "http://127.0.0.1:" + std::to_string(port) + "/metrics", {}, ""});
    if (!m.ok()) return -1;
    std::smatch match;
    std::regex re("moeserve_deployment_replicas_ready\\{[^}]*\\} ([0-9]+)");
    return std::regex_search(m->body, match, re) ? std::stoi(match[1]) : -1;
  };
  ASSERT_TRUE(wait_until([&] { return ready_groups() == 2; }, 60s))
      << read_file(dir.file("local.log"));

  std::set<std::string> groups_seen;
  std::set<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    auto r = complete(port);
    ASSERT_EQ(r.status, 200) << r.body;
    groups_seen.insert(r.header("x-moeserve-group"));
    texts.insert(nlohmann::json::parse(r.body)["choices"][0]["text"].get<std::string>());
  }
  EXPECT_EQ(groups_seen.size(), 2u) << "requests are spread over both groups";
  EXPECT_EQ(texts.size(), 1u) << "greedy output does not depend on the group";

  std::smatch pid_match;
  std::string log = read_file(dir.file("local.log"));
  ASSERT_TRUE(
      std::regex_search(log, pid_match, std::regex("\"group\":1,\"rank\":0,\"pid\":([0-9]+)")));
  ASSERT_EQ(kill(std::stoi(pid_match[1]), SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return ready_groups() == 1; }, 10s));
  EXPECT_EQ(complete(port).status, 200) << "the other group keeps serving";
  EXPECT_TRUE(wait_until([&] { return ready_groups() == 2; }, 60s)) << "the lost group restarts";
  EXPECT_NE(read_file(dir.file("local.log")).find("rank exited; restarting its group"),
            std::string::npos);

  local.signal(SIGTERM);
  EXPECT_EQ(local.wait(30s), 0);
}

TEST(LocalPlatform, AuthNeedsAKeyFileWhoseKeysTheEndpointThenRequires) {
  TempDir dir;
  ASSERT_EQ(run_command(bin_dir() + "/moeserve-make-tiny-model --out " + dir.file("model") +
                        " --arch deepseek_v3 --precision bf16 --seed 3 2>/dev/null"),
            0);
  std::string spec = kDeployment;
  spec = std::regex_replace(spec, std::regex("replicas: 2"), "replicas: 1");
  spec += "  auth:\n    secretName: llm-keys\n";
  moeserve::testing::write_file(dir.file("md.yaml"), spec);
  const std::string local = bin_dir() + "/moeserve-operator local -f " + dir.file("md.yaml") +
                            " --model " + dir.file("model");
  EXPECT_EQ(run_command(local + " 2>" + dir.file("refused.log")), 2)
      << "a Secret cannot be read locally";
  EXPECT_NE(read_file(dir.file("refused.log")).find("pass --api-key-file"), std::string::npos)
      << read_file(dir.file("refused.log"));

  moeserve::testing::write_file(dir.file("keys.txt"), "sk-local\n");
  uint16_t port = free_port();
  uint16_t base = moeserve::testing::free_base_port(port);
  Process running(
      {bin_dir() + "/moeserve-operator", "local", "-f", dir.file("md.yaml"), "--model",
       dir.file("model"), "--port", std::to_string(port), "--base-port", std::to_string(base),
       "--api-key-file", dir.file("keys.txt"), "--logs-dir", dir.path()},
      dir.file("local.log"));
  http::Client client;
  auto models = [&](const http::Headers& headers) {
    auto r = client.send(
        {"GET", "http://127.0.0.1:" + std::to_string(port) + "/v1/models", headers, ""});
    return r.ok() ? r->status : -1;
  };
  const http::Headers key = {{"Authorization", "Bearer sk-local"}};
  ASSERT_TRUE(wait_until([&] { return models(key) == 200; }, 60s))
      << read_file(dir.file("local.log"));
  EXPECT_EQ(models({}), 401);
  EXPECT_EQ(models({{"Authorization", "Bearer sk-other"}}), 401);
  running.signal(SIGTERM);
  EXPECT_EQ(running.wait(30s), 0);
}

TEST(LocalPlatform, RefusesToStartWhenAnotherProcessHoldsAWorkerPort) {
  TempDir dir;
  moeserve::testing::write_file(dir.file("md.yaml"), kDeployment);
  // "Another process": a listener on the port group 1's rank 0 would get.
  const uint16_t port = free_port();
  const uint16_t base = moeserve::testing::free_base_port(port);
  const int held = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;  // as the worker binds: a port in TIME_WAIT is not "held"
  ::setsockopt(held, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(base + 10));
  ASSERT_EQ(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(held, 1), 0);
  const std::string local = bin_dir() + "/moeserve-operator local -f " + dir.file("md.yaml") +
                            " --port " + std::to_string(port) + " --base-port " +
                            std::to_string(base) + " --logs-dir " + dir.path();
  EXPECT_EQ(run_command(local + " 2>" + dir.file("refused.log")), 1);
  const std::string refused = read_file(dir.file("refused.log"));
  EXPECT_NE(refused.find("port " + std::to_string(base + 10) +
                         " on 127.0.0.1 (group 1 rank 0 HTTP API) is already in use by another "
                         "process; stop that process or change --base-port"),
            std::string::npos)
      << refused;
  EXPECT_FALSE(std::filesystem::exists(dir.file("local-e2e-g0-r0.log")))
      << "no worker starts before every port is checked";
  ::close(held);
}

}  // namespace
}  // namespace moeserve
