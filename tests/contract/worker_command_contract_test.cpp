// The contract between the operator and the worker: what the operator renders (pod
// template, local processes, placement ConfigMap) is read by the worker's own parsers
// (parse_serve_flags, ExpertPlacement) into the intended rank, group and placement.
//
// A pod is run as the kubelet would run it: its env with the downward-API fieldRef on
// the pod-index label resolved, its command executed for real (so the /bin/sh rank
// arithmetic is exercised), with a stand-in `moeserve-worker` on PATH that records the
// arguments and environment it was started with. Those go to parse_serve_flags.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "operator/deployment/names.h"
#include "operator/deployment/parse.h"
#include "operator/deployment/plan.h"
#include "operator/deployment/render.h"
#include "operator/local/local_plan.h"
#include "tests/support/test_util.h"
#include "worker/cli/serve_options.h"
#include "worker/parallel/placement.h"

extern char** environ;

namespace moeserve {
namespace {

using nlohmann::json;
using Env = std::map<std::string, std::string>;

deployment::ModelDeployment make_deployment(json spec) {
  deployment::ModelDeployment md = deployment::parse_model_deployment(
      {{"metadata", {{"name", "ds"}, {"namespace", "ml"}, {"uid", "u"}, {"generation", 1}}},
       {"spec", std::move(spec)}});
  EXPECT_TRUE(md.valid()) << join_errors(md.errors);
  return md;
}

// The MOESERVE_* variables of this process replaced by `env` while it lives, so
// parse_serve_flags sees exactly what a worker process would.
class WorkerEnvironment {
 public:
  explicit WorkerEnvironment(const Env& env) {
    clear();
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
  }
  ~WorkerEnvironment() { clear(); }

 private:
  static void clear() {
    std::vector<std::string> names;
    for (char** e = environ; *e; ++e) {
      const std::string entry(*e);
      if (entry.rfind("MOESERVE_", 0) == 0) names.push_back(entry.substr(0, entry.find('=')));
    }
    for (const std::string& name : names) unsetenv(name.c_str());
  }
};

// The worker's view of `args` (after the binary) under `env`.
cli::ServeFlags parse_as_worker(std::vector<std::string> args, const Env& env) {
  EXPECT_FALSE(args.empty());
  EXPECT_EQ(args[0], "serve");
  args.erase(args.begin());
  WorkerEnvironment scoped(env);
  auto parsed = cli::parse_serve_flags(args);
  EXPECT_TRUE(parsed.ok()) << parsed.status().to_string();
  return parsed.ok() ? parsed->flags : cli::ServeFlags{};
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// What `moeserve-worker` receives when pod `pod_index` of a rendered StatefulSet starts.
struct Started {
  std::vector<std::string> args;  // after the binary
  Env env;                        // MOESERVE_* only
};

class PodRunner {
 public:
  PodRunner() {
    std::ofstream stub(dir_.file("moeserve-worker"));
    stub << "#!/bin/sh\nprintf '%s\\n' \"$@\" > '" << dir_.file("args") << "'\nenv > '"
         << dir_.file("env") << "'\n";
    stub.close();
    std::filesystem::permissions(dir_.file("moeserve-worker"), std::filesystem::perms::owner_all);
  }

  Started start(const json& statefulset, int32_t pod_index) const {
    const json& pod = statefulset["spec"]["template"];
    const json& container = pod["spec"]["containers"][0];
    EXPECT_EQ(container["name"], "worker");
    std::vector<std::string> env = {"PATH=" + dir_.path() + ":/usr/bin:/bin"};
    for (const json& var : container["env"]) {
      const std::string name = var["name"];
      if (var.contains("value")) {
        env.push_back(name + "=" + var["value"].get<std::string>());
      } else if (var["valueFrom"].contains("fieldRef")) {
        const std::string path = var["valueFrom"]["fieldRef"]["fieldPath"];
        const std::string label =
            "metadata.labels['" + std::string(deployment::kLabelPodIndex) + "']";
        EXPECT_EQ(path, label) << name << ": the only field the pods read";
        env.push_back(name + "=" + std::to_string(pod_index));
      }
    }
    std::vector<std::string> argv = container["command"];
    for (const json& arg : container["args"]) argv.push_back(arg);
    if (argv[0].find('/') == std::string::npos) argv[0] = dir_.file(argv[0]);  // PATH lookup
    EXPECT_EQ(run(argv, env), 0);
    Started out;
    out.args = lines_of(dir_.file("args"));
    for (const std::string& line : lines_of(dir_.file("env"))) {
      if (line.rfind("MOESERVE_", 0) == 0) {
        out.env[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
      }
    }
    return out;
  }

 private:
  // Runs argv with exactly `env` (a container's environment); returns the exit code.
  static int run(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    std::vector<char*> c_argv, c_env;
    for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
    for (const std::string& e : env) c_env.push_back(const_cast<char*>(e.c_str()));
    c_argv.push_back(nullptr);
    c_env.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      execve(c_argv[0], c_argv.data(), c_env.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  moeserve::testing::TempDir dir_;
};

// The worker flags of every pod of group `group`.
std::vector<cli::ServeFlags> pods_as_worker(const deployment::ModelDeployment& md, int32_t group) {
  const deployment::Plan plan = deployment::plan(md, deployment::Observed{});
  const json sts = deployment::render_statefulset(md, plan, group);
  PodRunner runner;
  std::vector<cli::ServeFlags> out;
  for (int32_t pod = 0; pod < sts["spec"]["replicas"].get<int32_t>(); ++pod) {
    const Started started = runner.start(sts, pod);
    out.push_back(parse_as_worker(started.args, started.env));
  }
  return out;
}

TEST(PodContract, SingleRankIsOneProcessWithTheSpecsModelPortAndPrecision) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "/opt/models/tiny", "servedModelName": "tiny", "precision": "bf16"},
    "worker": {"image": "w", "port": 9000}})"));
  const std::vector<cli::ServeFlags> pods = pods_as_worker(md, 0);
  ASSERT_EQ(pods.size(), 1u);
  const cli::ServeFlags& f = pods[0];
  EXPECT_EQ(f.model, "/opt/models/tiny");
  EXPECT_EQ(f.host, "0.0.0.0");
  EXPECT_EQ(f.port, 9000);
  EXPECT_EQ(f.served_model_name, "tiny");
  EXPECT_EQ(f.precision, "bf16");
  EXPECT_EQ(f.deployment, "ds");
  EXPECT_EQ(f.group.rank, 0);
  EXPECT_EQ(f.group.world_size, 1);
  EXPECT_FALSE(cli::in_group(f));
  EXPECT_EQ(f.group.placement, "");
  EXPECT_EQ(f.grpc_port, -1);
}

TEST(PodContract, SpeculativeSpecBecomesTheWorkersDrafterAndDraftsPerStep) {
  for (const std::string method : {"mtp", "ngram"}) {
    const deployment::ModelDeployment md = make_deployment(json::parse(
        R"({"model": {"source": "/opt/models/tiny"}, "worker": {"image": "w"},
            "speculative": {"method": ")" +
        method + R"(", "draftTokens": 3}})"));
    const std::vector<cli::ServeFlags> pods = pods_as_worker(md, 0);
    ASSERT_EQ(pods.size(), 1u);
    EXPECT_EQ(pods[0].speculative.method, method);
    EXPECT_EQ(pods[0].speculative.num_draft_tokens, 3);
  }
  const deployment::ModelDeployment plain = make_deployment(
      json::parse(R"({"model": {"source": "/opt/models/tiny"}, "worker": {"image": "w"}})"));
  EXPECT_EQ(pods_as_worker(plain, 0)[0].speculative.method, "none");
}

TEST(PodContract, TwoRankGroupTakesRanksFromThePodIndexAndMeetsAtRankZeroOfItsGroup) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "pvc://models/ds/v3"}, "replicas": 2,
    "parallelism": {"expertParallel": 2},
    "worker": {"image": "w", "rendezvousPort": 29600}})"));
  const std::vector<cli::ServeFlags> pods = pods_as_worker(md, 1);
  ASSERT_EQ(pods.size(), 2u);
  for (int32_t pod = 0; pod < 2; ++pod) {
    SCOPED_TRACE(pod);
    const cli::ServeFlags& f = pods[pod];
    EXPECT_EQ(f.group.rank, pod);
    EXPECT_EQ(f.group.world_size, 2);
    EXPECT_EQ(f.group.leader, "ds-g1-0.ds-ranks.ml.svc:29600");
    EXPECT_TRUE(cli::in_group(f));
    EXPECT_EQ(f.model, "/model/ds/v3");
    EXPECT_EQ(f.precision, "fp8");  // the CRD's default
    EXPECT_EQ(f.served_model_name, "v3");
  }
}

TEST(PodContract, TwoRanksPerPodStartAtPodIndexTimesTwoAndExtraArgsReachTheWorker) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "/m"},
    "parallelism": {"expertParallel": 4, "ranksPerPod": 2},
    "worker": {"image": "w", "resources": {"limits": {"nvidia.com/gpu": "2"}},
               "extraArgs": ["--max-num-seqs", "64", "--kv-cache-blocks", "512"]}})"));
  const std::vector<cli::ServeFlags> pods = pods_as_worker(md, 0);
  ASSERT_EQ(pods.size(), 2u);
  for (int32_t pod = 0; pod < 2; ++pod) {
    SCOPED_TRACE(pod);
    EXPECT_EQ(pods[pod].group.rank, pod * 2) << "the pod's first rank";
    EXPECT_EQ(pods[pod].group.world_size, 4);
    EXPECT_EQ(pods[pod].max_num_seqs, 64);
    EXPECT_EQ(pods[pod].kv_cache_blocks, 512);
  }
  const deployment::Plan plan = deployment::plan(md, deployment::Observed{});
  const Started second = PodRunner().start(deployment::render_statefulset(md, plan, 0), 1);
  EXPECT_EQ(second.env.at("MOESERVE_RANK"), "2") << "exported by the pod's shell";
}

// Two MoE layers (decoder layers 1 and 2) of 8 experts, 4 redundant slots, 4 ranks.
json placement_spec() {
  return json::parse(R"({
    "model": {"source": "/m", "routedExperts": 8, "moeLayers": 2},
    "parallelism": {"expertParallel": 4, "redundantExperts": 4},
    "worker": {"image": "w"}})");
}
const std::vector<int64_t> kMoeLayers = {1, 2};

TEST(PodContract, PlacementFlagNamesTheMountedConfigMapKey) {
  const deployment::ModelDeployment md = make_deployment(placement_spec());
  const deployment::Plan plan = deployment::plan(md, deployment::Observed{});
  const json sts = deployment::render_statefulset(md, plan, 0);
  const json& pod = sts["spec"]["template"]["spec"];
  std::string mount_path;
  for (const json& volume : pod["volumes"]) {
    if (!volume.contains("configMap")) continue;
    EXPECT_EQ(volume["configMap"]["name"], deployment::placement_configmap_name("ds"));
    for (const json& mount : pod["containers"][0]["volumeMounts"]) {
      if (mount["name"] == volume["name"]) mount_path = mount["mountPath"];
    }
  }
  ASSERT_FALSE(mount_path.empty()) << "the placement ConfigMap is mounted";
  const json configmap = *deployment::render(md, plan).placement_configmap;
  ASSERT_EQ(configmap["data"].size(), 1u);
  const std::string key = configmap["data"].begin().key();
  for (const cli::ServeFlags& f : pods_as_worker(md, 0)) {
    EXPECT_EQ(f.group.placement, mount_path + "/" + key);
  }
}

TEST(PlacementContract, TheWorkerLoadsTheOperatorsDefaultPlacement) {
  const deployment::ModelDeployment md = make_deployment(placement_spec());
  const deployment::Plan plan = deployment::plan(md, deployment::Observed{});
  const json configmap = *deployment::render(md, plan).placement_configmap;
  auto loaded = parallel::ExpertPlacement::parse(
      configmap["data"]["placement.json"].get<std::string>(), "placement.json", 4, 8, kMoeLayers);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->version(), 1);
  EXPECT_EQ(loaded->num_slots(), 12);
  EXPECT_EQ(loaded->slots_per_rank(), 3);
  for (int64_t layer : kMoeLayers) {
    // Experts 0..7 in order, then one replica each of experts 0, 2, 4, 6.
    EXPECT_EQ(loaded->phy2log(layer), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6}));
    EXPECT_EQ(loaded->replicas(layer, 0), (std::vector<int32_t>{0, 8}));
    EXPECT_EQ(loaded->replicas(layer, 6), (std::vector<int32_t>{6, 11}));
    EXPECT_EQ(loaded->replicas(layer, 1), (std::vector<int32_t>{1}));
    EXPECT_EQ(loaded->rank_of_slot(8), 2);
  }
}

TEST(PlacementContract, TheWorkerLoadsAPlacementProposedFromMeasuredLoads) {
  const deployment::ModelDeployment md = make_deployment(placement_spec());
  deployment::Observed observed;
  observed.current_placement = deployment::Placement{1, deployment::default_phy2log(8, 2, 4)};
  std::vector<double> hot(8, 100.0);
  hot[3] = 6000;  // expert 3 carries most tokens
  observed.expert_load = {hot, hot};
  const deployment::Plan plan = deployment::plan(md, observed);
  ASSERT_TRUE(plan.placement.proposed);
  const json configmap = *deployment::render(md, plan).placement_configmap;
  auto loaded = parallel::ExpertPlacement::parse(
      configmap["data"]["placement.json"].get<std::string>(), "placement.json", 4, 8, kMoeLayers);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->version(), 2);
  for (size_t i = 0; i < kMoeLayers.size(); ++i) {
    EXPECT_EQ(loaded->phy2log(kMoeLayers[i]), plan.placement.map->layers[i]);
    EXPECT_GT(loaded->replicas(kMoeLayers[i], 3).size(), 1u) << "the hot expert is replicated";
  }
}

// The worker flags of a local rank process: its argv after the binary, its env added.
cli::ServeFlags local_rank_as_worker(const local::RankProcess& p) {
  Env env;
  for (const std::string& entry : p.env) {
    env[entry.substr(0, entry.find('='))] = entry.substr(entry.find('=') + 1);
  }
  return parse_as_worker(std::vector<std::string>(p.argv.begin() + 1, p.argv.end()), env);
}

TEST(LocalContract, EveryRankParsesToItsRankGroupPortAndLeader) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "/models/tiny", "servedModelName": "tiny"}, "replicas": 2,
    "parallelism": {"expertParallel": 2},
    "worker": {"image": "w", "extraArgs": ["--max-num-seqs", "8"]}})"));
  local::LocalOptions options;
  options.model_dir = "/tmp/model";
  options.worker_binary = "/opt/bin/moeserve-worker";
  options.base_port = 9100;
  options.threads_per_rank = 3;
  const std::vector<local::GroupProcesses> groups = local::local_processes(md, 2, options);
  ASSERT_EQ(groups.size(), 2u);
  for (const local::GroupProcesses& g : groups) {
    ASSERT_EQ(g.ranks.size(), 2u);
    for (const local::RankProcess& p : g.ranks) {
      SCOPED_TRACE("group " + std::to_string(g.group) + " rank " + std::to_string(p.rank));
      ASSERT_EQ(p.argv[0], "/opt/bin/moeserve-worker");
      const cli::ServeFlags f = local_rank_as_worker(p);
      EXPECT_EQ(f.group.rank, p.rank);
      EXPECT_EQ(f.group.world_size, 2);
      EXPECT_TRUE(cli::in_group(f));
      EXPECT_EQ(f.group.leader, "127.0.0.1:" + std::to_string(9100 + g.group * 10 + 9));
      EXPECT_EQ(f.port, p.http_port);
      EXPECT_EQ(g.endpoint, "http://127.0.0.1:" + std::to_string(9100 + g.group * 10));
      EXPECT_EQ(f.host, "127.0.0.1");
      EXPECT_EQ(f.model, "/tmp/model");
      EXPECT_EQ(f.served_model_name, "tiny");
      EXPECT_EQ(f.deployment, "ds");
      EXPECT_EQ(f.threads, 3);
      EXPECT_EQ(f.max_num_seqs, 8);
      EXPECT_EQ(f.precision, "") << "the worker takes the checkpoint's precision";
      EXPECT_EQ(f.grpc_port, -1);
    }
  }
}

TEST(LocalContract, SpeculativeSpecReachesEveryRank) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "/models/tiny"}, "parallelism": {"expertParallel": 2},
    "worker": {"image": "w"}, "speculative": {"method": "ngram", "draftTokens": 2}})"));
  local::LocalOptions options;
  options.model_dir = "/tmp/model";
  const std::vector<local::GroupProcesses> groups = local::local_processes(md, 1, options);
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].ranks.size(), 2u);
  for (const local::RankProcess& p : groups[0].ranks) {
    const cli::ServeFlags f = local_rank_as_worker(p);
    EXPECT_EQ(f.speculative.method, "ngram");
    EXPECT_EQ(f.speculative.num_draft_tokens, 2);
  }
}

TEST(LocalContract, SingleRankGroupsAreSingleProcesses) {
  const deployment::ModelDeployment md = make_deployment(json::parse(R"({
    "model": {"source": "/models/tiny"}, "worker": {"image": "w"}})"));
  const std::vector<local::GroupProcesses> groups = local::local_processes(md, 1, {});
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].ranks.size(), 1u);
  const local::RankProcess& p = groups[0].ranks[0];
  const cli::ServeFlags f = local_rank_as_worker(p);
  EXPECT_FALSE(cli::in_group(f));
  EXPECT_EQ(f.group.rank, 0);
  EXPECT_EQ(f.port, 8100);
}

}  // namespace
}  // namespace moeserve
