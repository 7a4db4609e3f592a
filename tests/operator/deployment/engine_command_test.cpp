// The vLLM and SGLang renderings: golden command lines for DeepSeek-V3 FP8 on 2 nodes x
// 8 GPUs and DeepSeek-V4-Flash on 1 node x 8 GPUs, every rendered flag in the engine's
// documented flag list (tests/operator/deployment/data), and the contract that the
// rendered container command, run under /bin/sh as the pod would, execs exactly
// <engine>_argv() on every pod of the group.
#include "operator/deployment/engine_command.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operator/deployment/plan.h"
#include "operator/deployment/pod_template.h"
#include "operator/deployment/render.h"
#include "tests/operator/deployment/fixtures.h"
#include "tests/support/test_util.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;
using Argv = std::vector<std::string>;

// DeepSeek-V3 (FP8 checkpoint, 256 routed experts) on one group of 2 pods x 8 H200s.
json v3_two_nodes(const char* engine) {
  return json::parse(R"({
    "model": {"source": "hf://deepseek-ai/DeepSeek-V3", "routedExperts": 256,
              "downloaderImage": "moeserve-worker:1"},
    "replicas": 2,
    "parallelism": {"expertParallel": 16, "ranksPerPod": 8, "redundantExperts": 32},
    "worker": {"resources": {"limits": {"nvidia.com/gpu": "8"}}, "spreadAcrossNodes": true},
    "engine": {"kind": ")" +
                     std::string(engine) + R"(", "image": "engine:1"},
    "cost": {"gpuHourUsd": 2.0}
  })");
}

// DeepSeek-V4-Flash on one group of 1 pod x 8 H200s.
json v4_flash_one_node(const char* engine) {
  return json::parse(R"({
    "model": {"source": "hf://deepseek-ai/DeepSeek-V4-Flash", "downloaderImage": "moeserve-worker:1"},
    "parallelism": {"expertParallel": 8, "ranksPerPod": 8},
    "worker": {"resources": {"limits": {"nvidia.com/gpu": "8"}}},
    "engine": {"kind": ")" +
                     std::string(engine) + R"(", "image": "engine:1"},
    "cost": {"gpuHourUsd": 2.0}
  })");
}

ModelDeployment deployment(json spec) { return testing::valid_deployment(std::move(spec)); }

Argv concat(Argv a, const Argv& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const Argv kVllmV3 = {"vllm",
                      "serve",
                      "/model/deepseek-ai/DeepSeek-V3",
                      "--served-model-name",
                      "DeepSeek-V3",
                      "--host",
                      "0.0.0.0",
                      "--port",
                      "8000",
                      "--tensor-parallel-size",
                      "1",
                      "--data-parallel-size",
                      "16",
                      "--data-parallel-size-local",
                      "8",
                      "--enable-expert-parallel",
                      "--data-parallel-address",
                      "ds-g1-0.ds-ranks.ml.svc",
                      "--data-parallel-rpc-port",
                      "29500",
                      "--quantization",
                      "fp8",
                      "--enable-eplb",
                      "--eplb-config",
                      R"({"num_redundant_experts":32})"};

const Argv kSglangV3 = {"python3",
                        "-m",
                        "sglang.launch_server",
                        "--model-path",
                        "/model/deepseek-ai/DeepSeek-V3",
                        "--served-model-name",
                        "DeepSeek-V3",
                        "--host",
                        "0.0.0.0",
                        "--port",
                        "8000",
                        "--tp-size",
                        "16",
                        "--dp-size",
                        "16",
                        "--enable-dp-attention",
                        "--ep-size",
                        "16",
                        "--dist-init-addr",
                        "ds-g1-0.ds-ranks.ml.svc:29500",
                        "--nnodes",
                        "2",
                        "--enable-metrics",
                        "--quantization",
                        "fp8",
                        "--enable-eplb",
                        "--ep-num-redundant-experts",
                        "32"};

TEST(VllmArgv, DeepSeekV3OnTwoNodesIsOneDataParallelGroupWithExpertParallelism) {
  const ModelDeployment md = deployment(v3_two_nodes("vllm"));
  const GroupLayout l = layout_of(md.spec);
  EXPECT_EQ(vllm_argv(md, l, 1, 0, {}), kVllmV3);
  EXPECT_EQ(vllm_argv(md, l, 1, 1, {}),
            concat(kVllmV3, {"--headless", "--data-parallel-start-rank", "8"}));
}

TEST(VllmArgv, DeepSeekV4FlashOnOneNodeNeedsNoAddressAndNoWrapper) {
  const ModelDeployment md = deployment(v4_flash_one_node("vllm"));
  const GroupLayout l = layout_of(md.spec);
  EXPECT_EQ(
      vllm_argv(md, l, 0, 0, {}),
      (Argv{"vllm", "serve", "/model/deepseek-ai/DeepSeek-V4-Flash", "--served-model-name",
            "DeepSeek-V4-Flash", "--host", "0.0.0.0", "--port", "8000", "--tensor-parallel-size",
            "1", "--data-parallel-size", "8", "--data-parallel-size-local", "8",
            "--enable-expert-parallel", "--quantization", "fp8"}));
  const EngineContainer c = vllm_container(md, l, 0);
  EXPECT_EQ(c.command, Argv{"vllm"});
  EXPECT_EQ(concat(c.command, c.args), vllm_argv(md, l, 0, 0, {}));
}

TEST(SglangArgv, DeepSeekV3OnTwoNodesIsDpAttentionWithExpertParallelism) {
  const ModelDeployment md = deployment(v3_two_nodes("sglang"));
  const GroupLayout l = layout_of(md.spec);
  EXPECT_EQ(sglang_argv(md, l, 1, 0, ""), concat(kSglangV3, {"--node-rank", "0"}));
  EXPECT_EQ(sglang_argv(md, l, 1, 1, ""), concat(kSglangV3, {"--node-rank", "1"}));
}

TEST(SglangArgv, DeepSeekV4FlashOnOneNode) {
  const ModelDeployment md = deployment(v4_flash_one_node("sglang"));
  const GroupLayout l = layout_of(md.spec);
  EXPECT_EQ(sglang_argv(md, l, 0, 0, ""), (Argv{"python3",
                                                "-m",
                                                "sglang.launch_server",
                                                "--model-path",
                                                "/model/deepseek-ai/DeepSeek-V4-Flash",
                                                "--served-model-name",
                                                "DeepSeek-V4-Flash",
                                                "--host",
                                                "0.0.0.0",
                                                "--port",
                                                "8000",
                                                "--tp-size",
                                                "8",
                                                "--dp-size",
                                                "8",
                                                "--enable-dp-attention",
                                                "--ep-size",
                                                "8",
                                                "--enable-metrics",
                                                "--quantization",
                                                "fp8"}));
  EXPECT_EQ(sglang_container(md, l, 0).command, Argv{"python3"});
}

// The flags after the common ones, for spec changes that map to engine flags.
struct CommonSettingsCase {
  const char* name;
  const char* engine;
  void (*change)(json&);
  Argv vllm_tail;
  Argv sglang_tail;
};

TEST(EngineArgv, PrecisionSpeculationNameAndExtraArgs) {
  const CommonSettingsCase cases[] = {
      {"bf16",
       "",
       [](json& s) { s["model"]["precision"] = "bf16"; },
       {"--dtype", "bfloat16"},
       {"--dtype", "bfloat16"}},
      {"mtp, 3 draft tokens",
       "",
       [](json& s) {
         s["speculative"] = {{"method", "mtp"}, {"draftTokens", 3}};
       },
       {"--quantization", "fp8", "--speculative-config",
        R"({"method":"mtp","num_speculative_tokens":3})"},
       {"--quantization", "fp8", "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3",
        "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4"}},
      {"ngram, 2 draft tokens",
       "",
       [](json& s) {
         s["speculative"] = {{"method", "ngram"}, {"draftTokens", 2}};
       },
       {"--quantization", "fp8", "--speculative-config",
        R"({"method":"ngram","num_speculative_tokens":2})"},
       {"--quantization", "fp8", "--speculative-algorithm", "NGRAM",
        "--speculative-num-draft-tokens", "2"}},
      {"extra args last",
       "",
       [](json& s) {
         s["engine"]["extraArgs"] = {"--max-num-seqs", "256"};
       },
       {"--quantization", "fp8", "--max-num-seqs", "256"},
       {"--quantization", "fp8", "--max-num-seqs", "256"}},
  };
  for (const CommonSettingsCase& c : cases) {
    SCOPED_TRACE(c.name);
    for (const char* engine : {"vllm", "sglang"}) {
      json spec = v4_flash_one_node(engine);
      spec["model"]["servedModelName"] = "flash";
      c.change(spec);
      const ModelDeployment md = deployment(spec);
      const GroupLayout l = layout_of(md.spec);
      const bool vllm = std::string(engine) == "vllm";
      const Argv argv = vllm ? vllm_argv(md, l, 0, 0, {}) : sglang_argv(md, l, 0, 0, "");
      const Argv& tail = vllm ? c.vllm_tail : c.sglang_tail;
      ASSERT_GE(argv.size(), tail.size());
      EXPECT_EQ(Argv(argv.end() - tail.size(), argv.end()), tail) << engine;
      EXPECT_EQ(argv[vllm ? 4 : 6], "flash") << "--served-model-name";
    }
  }
}

std::set<std::string> documented_flags(const std::string& file) {
  std::ifstream in(moeserve::testing::source_dir() + "/tests/operator/deployment/data/" + file);
  EXPECT_TRUE(in.good()) << file;
  std::set<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != '#') out.insert(line);
  }
  return out;
}

// Every spec shape the renderings branch on: one and two pods, auth, speculation,
// bf16, redundant experts.
std::vector<json> spec_variety(const char* engine) {
  std::vector<json> out = {v3_two_nodes(engine), v4_flash_one_node(engine)};
  for (json base : {v3_two_nodes(engine), v4_flash_one_node(engine)}) {
    base["auth"] = {{"secretName", "keys"}};
    base["speculative"] = {{"method", "mtp"}, {"draftTokens", 2}};
    out.push_back(base);
    base["model"]["precision"] = "bf16";
    base["speculative"] = {{"method", "ngram"}, {"draftTokens", 4}};
    out.push_back(base);
  }
  return out;
}

TEST(EngineArgv, EveryRenderedFlagIsInTheEnginesDocumentedFlagList) {
  for (const char* engine : {"vllm", "sglang"}) {
    const bool vllm = std::string(engine) == "vllm";
    const std::set<std::string> documented =
        documented_flags(vllm ? "vllm_flags.txt" : "sglang_flags.txt");
    ASSERT_GT(documented.size(), 30u);
    for (const json& spec : spec_variety(engine)) {
      const ModelDeployment md = deployment(spec);
      const GroupLayout l = layout_of(md.spec);
      for (int32_t pod = 0; pod < l.pods_per_group; ++pod) {
        const Argv argv =
            vllm ? vllm_argv(md, l, 0, pod, {"k1"}) : sglang_argv(md, l, 0, pod, "k1");
        for (const std::string& word : argv) {
          if (word.rfind("--", 0) == 0) {
            EXPECT_TRUE(documented.count(word)) << engine << " renders undocumented " << word;
          }
        }
      }
    }
  }
}

// Runs the container's command + args under /bin/sh as pod `pod_index` would, with the
// program replaced by a script that prints its argv; returns the argv it was given.
Argv exec_in_pod(const EngineContainer& c, const std::string& program, int32_t pod_index,
                 const std::string& key_file, int* exit_code = nullptr) {
  moeserve::testing::TempDir dir;
  const std::string fake = dir.file(program);
  const std::string out = dir.file("argv");
  moeserve::testing::write_file(fake, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$ARGV_OUT\"\n");
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  Argv argv = c.command;
  if (argv.size() == 1) argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\"", argv[0]};
  EXPECT_EQ(argv.back(), program);
  argv.back() = fake;
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  moeserve::testing::Process process(argv, dir.file("log"),
                                     {"MOESERVE_POD_INDEX=" + std::to_string(pod_index),
                                      "MOESERVE_API_KEY_FILE=" + key_file, "ARGV_OUT=" + out});
  const int code = process.wait(std::chrono::seconds(20));
  if (exit_code) *exit_code = code;
  if (code != 0) return {moeserve::testing::read_file(dir.file("log"))};
  std::istringstream lines(moeserve::testing::read_file(out));
  Argv got = {program};
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  return got;
}

TEST(EngineContainer, TheShellWrapperExecsTheDocumentedArgvOnEveryPod) {
  moeserve::testing::TempDir keys;
  const std::string two_keys = keys.file("two");
  const std::string one_key = keys.file("one");
  moeserve::testing::write_file(two_keys, "key-a\nkey-b\n");
  moeserve::testing::write_file(one_key, "key-a\n");
  for (const char* engine : {"vllm", "sglang"}) {
    const bool vllm = std::string(engine) == "vllm";
    for (const json& spec : spec_variety(engine)) {
      const ModelDeployment md = deployment(spec);
      const GroupLayout l = layout_of(md.spec);
      const EngineContainer c = engine_container(md, l, 1);
      for (int32_t pod = 0; pod < l.pods_per_group; ++pod) {
        SCOPED_TRACE(std::string(engine) + " pod " + std::to_string(pod) + " of " +
                     std::to_string(l.pods_per_group) + (md.spec.auth.enabled() ? " auth" : ""));
        const Argv expected = vllm ? vllm_argv(md, l, 1, pod, {"key-a", "key-b"})
                                   : sglang_argv(md, l, 1, pod, "key-a");
        EXPECT_EQ(exec_in_pod(c, vllm ? "vllm" : "python3", pod, vllm ? two_keys : one_key),
                  expected);
      }
    }
  }
}

TEST(EngineContainer, SglangRefusesASecretWithSeveralKeys) {
  moeserve::testing::TempDir keys;
  moeserve::testing::write_file(keys.file("two"), "key-a\nkey-b\n");
  json spec = v4_flash_one_node("sglang");
  spec["auth"] = {{"secretName", "keys"}};
  const ModelDeployment md = deployment(spec);
  int code = 0;
  const Argv got = exec_in_pod(sglang_container(md, layout_of(md.spec), 0), "python3", 0,
                               keys.file("two"), &code);
  EXPECT_EQ(code, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].find("sglang takes exactly one API key"), std::string::npos) << got[0];
}

TEST(EngineContainer, ProbesPortsAndDrain) {
  const ModelDeployment v3 = deployment(v3_two_nodes("vllm"));
  const EngineContainer multi = vllm_container(v3, layout_of(v3.spec), 0);
  // Headless pods listen on no known port: the probe checks the leader's /health only.
  ASSERT_TRUE(multi.readiness_probe.contains("exec"));
  const std::string probe = multi.readiness_probe["exec"]["command"][2];
  EXPECT_NE(probe.find("http://127.0.0.1:8000/health"), std::string::npos) << probe;
  EXPECT_EQ(multi.startup_probe["failureThreshold"], 180) << "1800 s progress deadline / 10 s";
  EXPECT_EQ(multi.liveness_probe["periodSeconds"], 10);
  EXPECT_EQ(multi.ports, json::parse(R"([{"name": "http", "containerPort": 8000, "protocol": "TCP"},
      {"name": "rendezvous", "containerPort": 29500, "protocol": "TCP"}])"));
  EXPECT_EQ(multi.lifecycle["preStop"]["exec"]["command"], json::array({"/bin/sleep", "10"}));
  EXPECT_EQ(multi.termination_grace_seconds, kEngineTerminationGraceSeconds);

  const ModelDeployment flash = deployment(v4_flash_one_node("vllm"));
  EXPECT_EQ(vllm_container(flash, layout_of(flash.spec), 0).readiness_probe["httpGet"],
            json::parse(R"({"path": "/health", "port": "http"})"));
  // SGLang serves /health on every node (a health server on nodes > 0).
  const ModelDeployment sgl = deployment(v3_two_nodes("sglang"));
  EXPECT_EQ(sglang_container(sgl, layout_of(sgl.spec), 0).liveness_probe["httpGet"],
            json::parse(R"({"path": "/health", "port": "http"})"));
  EXPECT_EQ(metrics_port(sgl.spec), 8000);
  EXPECT_EQ(metrics_port(testing::valid_deployment(testing::v3_spec()).spec), 9090);
}

TEST(EnginePodTemplate, ImageEnvLabelsAndNoPlacementMap) {
  json spec = v3_two_nodes("vllm");
  spec["worker"]["env"] = json::parse(R"([{"name": "NCCL_DEBUG", "value": "WARN"}])");
  spec["engine"]["env"] = json::parse(R"([{"name": "VLLM_USE_DEEP_GEMM", "value": "1"}])");
  const ModelDeployment md = deployment(spec);
  const Rendered r = render(md, plan(md, Observed{}), {"moeserve-system"});
  EXPECT_FALSE(r.placement_configmap) << "vLLM places experts itself";
  const json& pod = r.statefulsets[0]["spec"]["template"];
  EXPECT_EQ(pod["metadata"]["labels"]["moeserve.io/engine"], "vllm");
  const json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["image"], "engine:1");
  std::vector<std::string> env;
  for (const json& e : c["env"]) env.push_back(e["name"]);
  EXPECT_EQ(env,
            (std::vector<std::string>{"MOESERVE_POD_INDEX", "MOESERVE_DEPLOYMENT", "MOESERVE_GROUP",
                                      "HOME", "NCCL_DEBUG", "VLLM_USE_DEEP_GEMM"}));
  EXPECT_EQ(pod["spec"]["terminationGracePeriodSeconds"], kEngineTerminationGraceSeconds);
  for (const json& m : c["volumeMounts"]) EXPECT_NE(m["name"], "placement");
  // /metrics is on the API port: the operator is admitted there, and there is no
  // separate metrics rule.
  ASSERT_TRUE(r.network_policy);
  const json& ingress = (*r.network_policy)["spec"]["ingress"];
  ASSERT_EQ(ingress.size(), 1u);
  EXPECT_EQ(ingress[0]["ports"][0]["port"], 8000);
  EXPECT_EQ(ingress[0]["from"].size(), 2u) << ingress.dump();
}

TEST(EnginePodTemplate, MoeserveEngineExtraArgsAndEnvFollowTheWorkers) {
  json spec = testing::v3_spec();
  spec["worker"]["extraArgs"] = {"--max-num-seqs", "256"};
  spec["engine"] = {{"extraArgs", {"--threads", "4"}},
                    {"env", json::parse(R"([{"name": "A", "value": "1"}])")}};
  const ModelDeployment md = deployment(spec);
  const json sts = render_statefulset(md, plan(md, Observed{}), 0);
  const json& c = sts["spec"]["template"]["spec"]["containers"][0];
  const Argv args = c["args"];
  EXPECT_EQ(Argv(args.end() - 4, args.end()), (Argv{"--max-num-seqs", "256", "--threads", "4"}));
  EXPECT_EQ(c["env"].back()["name"], "A");
  EXPECT_FALSE(sts["spec"]["template"]["metadata"]["labels"].contains("moeserve.io/engine"));
}

TEST(ValidateEngine, RefusesWhatTheEngineCannotTake) {
  struct Case {
    const char* name;
    void (*change)(json&);
    std::string expected;
  };
  const Case cases[] = {
      {"moeserve-worker flags",
       [](json& s) {
         s["worker"]["extraArgs"] = {"--threads", "4"};
       },
       "spec.worker.extraArgs: are moeserve-worker flags; engine vllm takes its own in "
       "spec.engine.extraArgs"},
      {"placement map shape", [](json& s) { s["model"]["moeLayers"] = 58; },
       "spec.model.moeLayers: shapes moeserve's expert placement map, which engine vllm does not "
       "read (it places experts itself; spec.parallelism.redundantExperts turns on its EPLB)"},
      {"a flag the operator renders", [](json& s) { s["engine"]["extraArgs"] = {"--port=9000"}; },
       "spec.engine.extraArgs[0]: \"--port\" is rendered by the operator from spec.worker.port"},
      {"an alias too",
       [](json& s) {
         s["engine"]["extraArgs"] = {"-tp", "8"};
       },
       "spec.engine.extraArgs[0]: \"-tp\" is rendered by the operator from spec.parallelism"},
      {"no image", [](json& s) { s["engine"].erase("image"); },
       "spec.engine.image: required for engine vllm (or spec.worker.image)"},
      {"operator env",
       [](json& s) {
         s["engine"]["env"] = {{{"name", "MOESERVE_RANK"}}};
       },
       "spec.engine.env[0].name: MOESERVE_* variables are set by the operator (got "
       "\"MOESERVE_RANK\")"},
      {"unknown kind",
       [](json& s) {
         s["engine"]["kind"] = "tgi";
         s["model"]["moeLayers"] = 58;  // valid for moeserve, which an unknown kind leaves
       },
       "spec.engine.kind: must be one of moeserve, vllm, sglang (got \"tgi\")"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json spec = v3_two_nodes("vllm");
    c.change(spec);
    EXPECT_EQ(join_errors(testing::make_deployment(spec).errors), c.expected);
  }
  json plain = v3_two_nodes("sglang");
  plain["engine"]["extraArgs"] = {"--mem-fraction-static", "0.85", "--moe-a2a-backend", "deepep"};
  EXPECT_TRUE(testing::make_deployment(plain).valid());
}

}  // namespace
}  // namespace moeserve::deployment
