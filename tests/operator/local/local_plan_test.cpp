#include "operator/local/local_plan.h"
#include "operator/deployment/parse.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace moeserve::local {
namespace {

deployment::ModelDeployment deployment(int expert_parallel, int ranks_per_pod,
                                       std::vector<std::string> extra_args = {"--max-num-seqs",
                                                                              "8"}) {
  nlohmann::json object = {
      {"apiVersion", "moeserve.io/v1alpha1"},
      {"kind", "ModelDeployment"},
      {"metadata", {{"name", "demo"}, {"namespace", "local"}, {"uid", "u"}}},
      {"spec",
       {{"model", {{"source", "/models/tiny"}, {"servedModelName", "tiny"}}},
        {"replicas", 2},
        {"parallelism", {{"expertParallel", expert_parallel}, {"ranksPerPod", ranks_per_pod}}},
        {"worker", {{"image", "w"}, {"extraArgs", extra_args}}}}}};
  deployment::ModelDeployment md = deployment::parse_model_deployment(object);
  EXPECT_TRUE(md.valid()) << join_errors(md.errors);
  return md;
}

bool has_env(const RankProcess& p, const std::string& entry) {
  return std::find(p.env.begin(), p.env.end(), entry) != p.env.end();
}

TEST(LocalPlan, OneProcessPerRankWithGroupEnvironment) {
  LocalOptions options;
  options.worker_binary = "/bin/moeserve-worker";
  options.base_port = 9000;
  auto groups = local_processes(deployment(4, 2), 2, options);
  ASSERT_EQ(groups.size(), 2u);
  std::set<uint16_t> ports;
  for (const auto& g : groups) {
    ASSERT_EQ(g.ranks.size(), 4u) << "a process per rank, whatever ranksPerPod says";
    for (const auto& r : g.ranks) {
      ports.insert(r.http_port);
      EXPECT_EQ(r.argv[0], "/bin/moeserve-worker");
      EXPECT_EQ(r.argv[1], "serve");
      EXPECT_TRUE(has_env(r, "MOESERVE_RANK=" + std::to_string(r.rank)));
      EXPECT_TRUE(has_env(r, "MOESERVE_WORLD_SIZE=4"));
      EXPECT_TRUE(has_env(r, "MOESERVE_DEPLOYMENT=demo"));
      auto threads = std::find(r.argv.begin(), r.argv.end(), "--threads");
      ASSERT_NE(threads, r.argv.end());
      EXPECT_EQ(*(threads + 1), "1");
      EXPECT_EQ(std::find(r.argv.begin(), r.argv.end(), "--precision"), r.argv.end())
          << "--model may stand in for the spec's checkpoint: the worker reads its precision";
    }
  }
  EXPECT_EQ(ports.size(), 8u) << "every rank has its own port";
  EXPECT_EQ(groups[0].endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(groups[1].endpoint, "http://127.0.0.1:9010");
  EXPECT_TRUE(has_env(groups[1].ranks[3], "MOESERVE_LEADER_ADDR=127.0.0.1:9019"));
}

TEST(LocalPlan, SingleRankGroupsAreOneProcessOfWorldSizeOne) {
  auto groups = local_processes(deployment(1, 1), 1, {});
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].ranks.size(), 1u);
  EXPECT_TRUE(has_env(groups[0].ranks[0], "MOESERVE_RANK=0"));
  EXPECT_TRUE(has_env(groups[0].ranks[0], "MOESERVE_WORLD_SIZE=1"));  // the leader is unused
}

TEST(LocalPlan, ModelOverrideAndExtraArgs) {
  LocalOptions options;
  options.model_dir = "/tmp/m";
  auto groups = local_processes(deployment(1, 1), 1, options);
  const auto& argv = groups[0].ranks[0].argv;
  auto model = std::find(argv.begin(), argv.end(), "--model");
  ASSERT_NE(model, argv.end());
  EXPECT_EQ(*(model + 1), "/tmp/m");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--max-num-seqs"), argv.end());
  auto name = std::find(argv.begin(), argv.end(), "--served-model-name");
  EXPECT_EQ(*(name + 1), "tiny");
}

TEST(LocalPlan, ApiKeyFileReachesEveryRankAndIsOmittedWithout) {
  LocalOptions options;
  options.api_key_file = "/etc/keys.txt";
  const auto groups = local_processes(deployment(2, 1), 1, options);
  for (const auto& r : groups[0].ranks) {
    auto flag = std::find(r.argv.begin(), r.argv.end(), "--api-key-file");
    ASSERT_NE(flag, r.argv.end());
    EXPECT_EQ(*(flag + 1), "/etc/keys.txt");
  }
  const auto plain_groups = local_processes(deployment(1, 1), 1, {});
  const auto& plain = plain_groups[0].ranks[0].argv;
  EXPECT_EQ(std::find(plain.begin(), plain.end(), "--api-key-file"), plain.end());
  EXPECT_EQ(std::find(plain.begin(), plain.end(), "--metrics-port"), plain.end())
      << "local workers keep /metrics on their HTTP port";
}

TEST(LocalPlan, PlannedPortsAreTheEndpointEachRankAndEachGroupsRendezvous) {
  LocalOptions options;
  options.base_port = 9000;
  const auto groups = local_processes(deployment(2, 1), 2, options);
  EXPECT_EQ(groups[0].leader_port, 9009);
  const std::vector<PlannedPort> ports = planned_ports(groups, 8000);
  const std::vector<PlannedPort> expected = {
      {8000, "the OpenAI endpoint", "--port"},
      {9000, "group 0 rank 0 HTTP API", "--base-port"},
      {9001, "group 0 rank 1 HTTP API", "--base-port"},
      {9009, "group 0 rendezvous store (collective setup)", "--base-port"},
      {9010, "group 1 rank 0 HTTP API", "--base-port"},
      {9011, "group 1 rank 1 HTTP API", "--base-port"},
      {9019, "group 1 rendezvous store (collective setup)", "--base-port"}};
  EXPECT_EQ(ports, expected);
  EXPECT_TRUE(check_distinct_ports(ports).ok());
}

TEST(LocalPlan, SingleRankGroupsHaveNoRendezvousPortAndAnEphemeralEndpointIsNotPlanned) {
  const auto groups = local_processes(deployment(1, 1), 1, {});
  EXPECT_EQ(groups[0].leader_port, 0);
  const std::vector<PlannedPort> ports = planned_ports(groups, 0);
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].port, 8100);
}

TEST(LocalPlan, PortsFixedInExtraArgsArePlannedAndTwoRanksSharingOneAreRefused) {
  LocalOptions options;
  options.base_port = 9000;
  const auto groups =
      local_processes(deployment(2, 1, {"--metrics-port", "9400", "--grpc-port=9500"}), 1, options);
  const std::vector<PlannedPort> ports = planned_ports(groups, 8000);
  EXPECT_NE(std::find(ports.begin(), ports.end(),
                      PlannedPort{9400, "group 0 rank 0 metrics",
                                  "spec.worker.extraArgs --metrics-port"}),
            ports.end());
  EXPECT_NE(std::find(ports.begin(), ports.end(),
                      PlannedPort{9500, "group 0 rank 0 control (gRPC)",
                                  "spec.worker.extraArgs --grpc-port"}),
            ports.end());
  const Status s = check_distinct_ports(ports);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("port 9400 would serve both group 0 rank 0 metrics and group 0 rank "
                             "1 metrics: change spec.worker.extraArgs --metrics-port"),
            std::string::npos)
      << s.message();
}

TEST(LocalPlan, TheEndpointInsideTheWorkerRangeIsRefusedNamingBothFlags) {
  LocalOptions options;
  options.base_port = 9000;
  const auto groups = local_processes(deployment(1, 1), 1, options);
  const Status s = check_distinct_ports(planned_ports(groups, 9000));
  EXPECT_EQ(s.message(),
            "local: port 9000 would serve both the OpenAI endpoint and group 0 rank 0 HTTP API: "
            "change --port or --base-port");
}

}  // namespace
}  // namespace moeserve::local
