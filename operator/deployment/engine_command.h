// The worker container of a group running vLLM or SGLang instead of moeserve's own
// worker (spec.engine.kind), from the same plan: one group = one model copy over
// pods_per_group pods of ranks_per_pod GPUs, pod k of the group is node k, pod 0 is the
// leader, reached at x-g<i>-0.x-ranks.<ns>.svc through the headless Service. Pure.
//
// The flags are those of the versions named in docs/engines.md; the flag names each
// function may render are test data (tests/operator/deployment/data/*_flags.txt).
//
// vLLM (`vllm serve MODEL`): one data-parallel group with expert parallelism,
//   --data-parallel-size N --data-parallel-size-local R --tensor-parallel-size 1
//   [--enable-expert-parallel when N > 1]
//   [with several pods: --data-parallel-address LEADER --data-parallel-rpc-port RP,
//    and on pods k > 0: --headless --data-parallel-start-rank k*R]
// SGLang (`python3 -m sglang.launch_server --model-path MODEL`): DP attention with EP,
//   --tp-size N [--dp-size N --enable-dp-attention --ep-size N when N > 1]
//   [with several pods: --dist-init-addr LEADER:RP --nnodes P --node-rank k]
//   --enable-metrics (SGLang serves /metrics only with it)
// Both: --served-model-name, --host 0.0.0.0 --port P, precision (fp8: --quantization
// fp8; bf16: --dtype bfloat16), EPLB from spec.parallelism.redundantExperts,
// speculative decoding from spec.speculative, then spec.engine.extraArgs; the API key
// on the leader from spec.auth's Secret (vLLM takes every key in it, SGLang exactly
// one; the pod exits with a message otherwise).
//
// The pod index is known only in the pod, so per-pod flags are appended by a short
// /bin/sh wrapper (command = /bin/sh -c SCRIPT <program>, args = the common flags, the
// script ends in `exec "$0" "$@"`); with one pod and no API key there is no wrapper.
// <engine>_argv() says what the wrapper execs on pod k: the contract a test checks by
// running the rendered command under /bin/sh.
//
// Health: vLLM serves GET /health on the API port of the leader only (pods k > 0 are
// headless and listen on no known port), so with several pods the probes are an exec
// that checks the leader's /health and passes on the other pods (their engines fail
// the leader's /health when they die). SGLang serves /health on every node (a small
// health server on nodes k > 0), probed with httpGet. Startup probes allow the whole
// progress deadline for loading. Drain: preStop sleeps kEngineDrainSeconds so the
// Service and the gateway stop routing before SIGTERM, then the engine finishes what
// it has within the termination grace period.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/layout.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

inline constexpr int64_t kEngineTerminationGraceSeconds = 120;
inline constexpr int32_t kEngineDrainSeconds = 10;
inline constexpr const char* kMetricsPath = "/metrics";

struct EngineContainer {
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::vector<EnvVar> env;  // MOESERVE_* and HOME; the caller adds spec.worker.env, spec.engine.env
  nlohmann::json ports;     // core/v1 ContainerPort list
  nlohmann::json startup_probe;
  nlohmann::json liveness_probe;
  nlohmann::json readiness_probe;
  nlohmann::json lifecycle;
  int64_t termination_grace_seconds = kEngineTerminationGraceSeconds;
};

// Preconditions: md.valid(), md.spec.engine.kind is kVllm (resp. kSglang).
EngineContainer vllm_container(const ModelDeployment& md, const GroupLayout& layout, int32_t group);
EngineContainer sglang_container(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group);
// The container of spec.engine.kind; precondition: it is not kMoeserve.
EngineContainer engine_container(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group);

// The argv pod `pod_index` of group `group` executes; `api_keys` are the words of the
// auth Secret's key (used only with spec.auth).
std::vector<std::string> vllm_argv(const ModelDeployment& md, const GroupLayout& layout,
                                   int32_t group, int32_t pod_index,
                                   const std::vector<std::string>& api_keys);
std::vector<std::string> sglang_argv(const ModelDeployment& md, const GroupLayout& layout,
                                     int32_t group, int32_t pod_index, const std::string& api_key);

// The port a group leader serves /metrics on: spec.worker.metricsPort for moeserve,
// the API port (spec.worker.port) for vLLM and SGLang.
int32_t metrics_port(const ModelDeploymentSpec& spec);

// For a flag the operator renders for `kind` ("--port"), the spec field it comes from
// ("spec.worker.port"); nullptr for any other flag (and for kMoeserve).
const char* operator_rendered_flag(EngineKind kind, std::string_view flag);

}  // namespace moeserve::deployment
