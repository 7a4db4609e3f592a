// ModelDeployment (moeserve.io/v1alpha1) as plain C++ structs, with the CRD's defaults
// as member initialisers (deploy/crds/modeldeployments.moeserve.io.yaml; a test walks
// the CRD schema and checks that both agree, so they cannot drift), and the small pure
// helpers that read them. Reading from JSON is parse.h, the rules are validate.h,
// writing JSON is serialize.h. Field documentation for users lives in docs/crd.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_reader.h"

namespace moeserve::deployment {

inline constexpr std::string_view kGroup = "moeserve.io";
inline constexpr std::string_view kVersion = "v1alpha1";
inline constexpr std::string_view kApiVersion = "moeserve.io/v1alpha1";
inline constexpr std::string_view kKind = "ModelDeployment";
inline constexpr std::string_view kGpuResource = "nvidia.com/gpu";
// Longest metadata.name: pod names `<name>-g<group>-<pod>` and the StatefulSet's
// controller-revision-hash label `<name>-g<group>-<10 chars>` must stay DNS labels.
inline constexpr size_t kMaxNameLength = 40;

// kAuto: the checkpoint's own format (no precision flag is passed to the engine).
enum class Precision { kFp8, kBf16, kAuto };
// The worker's --speculative drafters: the checkpoint's multi-token-prediction module,
// or prompt lookup over each request's own tokens.
enum class SpeculativeMethod { kNone, kMtp, kNgram };

// The data plane a deployment's pods run: moeserve's own worker, vLLM or SGLang. The
// plan (groups x ranks) is the same for all three; the pod command line, health checks
// and metric names differ (engine_command.h, autoscaler/engine_metrics.h).
enum class EngineKind { kMoeserve, kVllm, kSglang };

std::string_view precision_name(Precision precision);         // "fp8" | "bf16" | "auto"
std::string_view speculative_name(SpeculativeMethod method);  // "none" | "mtp" | "ngram"
std::string_view engine_name(EngineKind kind);                // "moeserve" | "vllm" | "sglang"

// Where the checkpoint comes from, decoded from spec.model.source.
struct ModelSource {
  enum class Kind { kHuggingFace, kPvc, kPath };
  Kind kind = Kind::kPath;
  std::string repo;      // kHuggingFace: "org/name"
  std::string revision;  // kHuggingFace: as written after '@' ("" = the branch main)
  std::string claim;     // kPvc: the PersistentVolumeClaim
  std::string path;      // kPvc: path inside the claim ("" = its root); kPath: absolute path
};
// Decodes "hf://org/name[@revision]" (common/hf_source.h), "pvc://claim[/path]" or
// "/abs/path"; nullopt when malformed.
std::optional<ModelSource> parse_model_source(std::string_view source);

struct ModelSpec {
  std::string source;
  std::string served_model_name;  // "" = derived from the source (see served_model_name())
  Precision precision = Precision::kFp8;
  std::optional<int32_t> routed_experts;  // n_routed_experts of the checkpoint
  std::optional<int32_t> moe_layers;      // number of MoE layers (placement map rows)
  // hf:// sources: the image of the init container running moeserve-fetch ("" = the
  // moeserve worker image spec.worker.image, which ships it), and an optional
  // PersistentVolumeClaim that caches downloads for every pod and group ("" = an
  // emptyDir per pod).
  std::string downloader_image;
  std::string cache_claim;
};

struct ParallelismSpec {
  int32_t expert_parallel = 1;  // ranks per group (one model copy)
  int32_t ranks_per_pod = 1;    // ranks (GPUs) per pod
  int32_t redundant_experts = 0;
};

struct ResourceRequirements {
  // Quantities as Kubernetes strings ("8", "64Gi", "500m"); integers are read as strings.
  std::map<std::string, std::string> requests;
  std::map<std::string, std::string> limits;
  friend bool operator==(const ResourceRequirements&, const ResourceRequirements&) = default;
};

struct Toleration {
  std::string key;
  std::string op = "Equal";  // "operator" in JSON: Equal | Exists
  std::string value;
  std::string effect;  // "" (all) | NoSchedule | PreferNoSchedule | NoExecute
  std::optional<int64_t> toleration_seconds;
  friend bool operator==(const Toleration&, const Toleration&) = default;
};

struct EnvVar {
  std::string name;
  std::optional<std::string> value;
  nlohmann::json value_from;  // null when absent; passed through as a core/v1 EnvVarSource
  friend bool operator==(const EnvVar&, const EnvVar&) = default;
};

struct WorkerSpec {
  std::string image;
  std::string image_pull_policy = "IfNotPresent";
  ResourceRequirements resources;
  std::map<std::string, std::string> node_selector;
  std::vector<Toleration> tolerations;
  std::vector<EnvVar> env;
  std::vector<std::string> extra_args;
  bool spread_across_nodes = false;        // required pod anti-affinity within a group
  int32_t port = 8000;                     // HTTP: OpenAI API (rank 0), /healthz, /readyz
  int32_t rendezvous_port = 29500;         // rank 0's store for the group's collectives
  int32_t metrics_port = 9090;             // /metrics, apart from the API port
  std::string shared_memory_size = "8Gi";  // /dev/shm emptyDir (NCCL, gloo)
  // Pod identity and placement, passed through to the pod template as given (core/v1
  // shapes; validate.h checks what the API server would refuse).
  std::string service_account_name;             // "": the namespace's default
  std::vector<std::string> image_pull_secrets;  // Secret names
  std::vector<nlohmann::json> volumes;          // core/v1 Volume
  std::vector<nlohmann::json> volume_mounts;    // core/v1 VolumeMount (worker container)
  nlohmann::json node_affinity;                 // core/v1 NodeAffinity; null when absent
  std::string priority_class_name;
  std::vector<nlohmann::json> topology_spread_constraints;  // core/v1 TopologySpreadConstraint
};

// API keys for the OpenAI endpoint, from a Secret in the deployment's namespace: its
// `key` holds one key per line; clients send any of them as a Bearer token.
struct AuthSpec {
  std::string secret_name;  // "": no authentication
  std::string key = "api-keys";
  bool enabled() const { return !secret_name.empty(); }
};

// The NetworkPolicies the operator renders (render.h): who may reach which port.
struct NetworkPolicySpec {
  bool enabled = true;
  // core/v1 NetworkPolicyPeer lists; empty api_from admits the deployment's own
  // namespace, empty metrics_from admits only the operator.
  std::vector<nlohmann::json> api_from;
  std::vector<nlohmann::json> metrics_from;
};

// How the gateway (moeserve-gateway) treats requests for this deployment while it has
// no ready group (scaled to zero, or waking): it holds up to queue_size of them for at
// most queue_timeout_seconds each, then answers 503 with Retry-After.
struct GatewaySpec {
  int32_t queue_size = 64;
  int32_t queue_timeout_seconds = 300;
};

struct SpeculativeSpec {
  SpeculativeMethod method = SpeculativeMethod::kNone;
  int32_t draft_tokens = 1;  // the worker's --num-draft-tokens
};

// spec.engine. The container image is `image`, else spec.worker.image. `extra_args` are
// the engine's own flags, appended after everything the operator renders (for moeserve
// after spec.worker.extraArgs, which other engines refuse: those are moeserve-worker
// flags); `env` is added to the engine container after spec.worker.env.
struct EngineSpec {
  EngineKind kind = EngineKind::kMoeserve;
  std::string image;
  std::vector<std::string> extra_args;
  std::vector<EnvVar> env;
};

struct AutoscalingSpec {
  bool enabled = false;
  int32_t min_replicas = 1;
  int32_t max_replicas = 1;
  std::optional<double> target_tokens_per_second_per_group;
  std::optional<double> max_cost_per_million_tokens;  // USD
  std::optional<double> ttft_p95_slo_seconds;
  int32_t scale_down_stabilization_seconds = 300;
  std::optional<int32_t> scale_to_zero_after_idle_seconds;  // needs enabled
};

struct CostSpec {
  double gpu_hour_usd = 0;  // price of one GPU for one hour
  double pod_hour_usd = 0;  // price of one worker pod for one hour on top of its GPUs
};

struct ModelDeploymentSpec {
  ModelSpec model;
  int32_t replicas = 1;  // groups (model copies)
  ParallelismSpec parallelism;
  WorkerSpec worker;
  EngineSpec engine;
  SpeculativeSpec speculative;
  AutoscalingSpec autoscaling;
  CostSpec cost;
  AuthSpec auth;
  NetworkPolicySpec network_policy;
  GatewaySpec gateway;
  int32_t progress_deadline_seconds = 1800;  // a group not ready this long -> Degraded
};

struct Condition {
  std::string type;    // Ready | Progressing | Degraded
  std::string status;  // "True" | "False" | "Unknown"
  std::string reason;  // CamelCase
  std::string message;
  int64_t observed_generation = 0;
  std::string last_transition_time;  // RFC 3339, UTC, seconds
  friend bool operator==(const Condition&, const Condition&) = default;
};

// The last live switch of the expert placement to a new version.
struct PlacementSwitchStatus {
  int64_t version = 0;
  std::string result;                         // InProgress | Committed | Aborted
  std::optional<double> balancedness_before;  // measured on the running map when rolled out
  std::optional<double> balancedness_after;   // planned for the new map
  std::optional<double> duration_seconds;     // Committed: the slowest group's prepare-to-commit
  std::string message;                        // Aborted: the group and rank that failed, why
  friend bool operator==(const PlacementSwitchStatus&, const PlacementSwitchStatus&) = default;
};

struct PlacementStatus {
  int64_t version = 0;
  double balancedness = 0;  // mean rank load / max rank load, in (0, 1]
  // What the ranks really carried under the running map (per-slot counts), when measured.
  std::optional<double> measured_balancedness;
  std::optional<PlacementSwitchStatus> last_switch;
  friend bool operator==(const PlacementStatus&, const PlacementStatus&) = default;
};

struct ModelDeploymentStatus {
  int64_t observed_generation = 0;
  int32_t desired_replicas = 0;  // groups the operator converges to (after autoscaling)
  int32_t replicas = 0;          // groups that exist (not terminating)
  int32_t ready_replicas = 0;    // groups whose every pod is ready
  int32_t updated_replicas = 0;  // ready groups on the current worker template
  std::string selector;          // label selector of the groups' rank-0 pods
  std::vector<Condition> conditions;
  std::optional<double> tokens_per_second;
  std::optional<double> cost_per_million_tokens;  // USD
  std::optional<PlacementStatus> placement;
  friend bool operator==(const ModelDeploymentStatus&, const ModelDeploymentStatus&) = default;
};

struct ObjectMeta {
  std::string name;
  std::string namespace_;
  std::string uid;
  int64_t generation = 0;
};

// A ModelDeployment as read from the API server. `errors` holds every type error and
// rule violation of metadata and spec; the spec is usable only when it is empty.
struct ModelDeployment {
  ObjectMeta metadata;
  ModelDeploymentSpec spec;
  ModelDeploymentStatus status;
  std::vector<FieldError> errors;

  bool valid() const { return errors.empty(); }
};

// The name the OpenAI API serves: spec.model.servedModelName, else the last path
// segment of the source ("hf://deepseek-ai/DeepSeek-V3" -> "DeepSeek-V3").
std::string served_model_name(const ModelSpec& model);
// The engine container's image: spec.engine.image, else spec.worker.image.
const std::string& engine_image(const ModelDeploymentSpec& spec);
// Integer count of nvidia.com/gpu per pod (limits, else requests); 0 when unset.
int32_t gpus_per_pod(const WorkerSpec& worker);
// A whole-number quantity such as "8"; nullopt for "1.5", "2Gi", "x".
std::optional<int64_t> whole_quantity(const std::string& text);

}  // namespace moeserve::deployment
