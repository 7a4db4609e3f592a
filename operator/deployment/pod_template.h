// The worker pod template of group i of a ModelDeployment x (pure), and its hash.
//
// Container `worker` runs `moeserve-worker serve` with the command line and MOESERVE_*
// environment of worker_command.h (rank from the pod index, --precision from the spec,
// --leader x-g<i>-0.x-ranks.<ns>.svc:RP, --placement
// /etc/moeserve/placement/placement.json when the spec gives the expert shape), then
// spec.worker.env (which may not use MOESERVE_*).
// Every rank serves /healthz (liveness, startup) and /readyz (readiness: model loaded
// and group formed) on port P; rank 0 also serves the OpenAI API there. /metrics is on
// spec.worker.metricsPort, apart, so a NetworkPolicy can tell scrapers from clients.
//
// Identity: automountServiceAccountToken is false (workers never call the API server);
// spec.worker's serviceAccountName, imagePullSecrets, volumes, volumeMounts,
// nodeAffinity, priorityClassName and topologySpreadConstraints are passed through.
// spec.auth mounts its Secret read-only at /etc/moeserve/auth (a whole-volume mount,
// not subPath, so the kubelet's atomic updates reach the worker, which re-reads the
// file: rotating keys changes the Secret, never this template) and passes
// --api-key-file /etc/moeserve/auth/<key>.
//
// Model sources: an image path is used as is; pvc://claim/path mounts the claim
// read-only at /model and serves /model/path; hf://org/name[@revision] is downloaded to
// /model/org/name[/revision] by an init container running moeserve-fetch
// (from spec.model.downloaderImage, default the worker image; with spec.worker.env so
// HF_TOKEN and HF_ENDPOINT can be given) into an emptyDir, or into the claim
// spec.model.cacheClaim shared by every pod (moeserve-fetch takes a lock on the
// directory and downloads nothing when it already holds the revision's commit).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/layout.h"
#include "operator/deployment/types.h"
#include "operator/deployment/worker_command.h"

namespace moeserve::deployment {

inline constexpr const char* kWorkerContainer = "worker";
inline constexpr const char* kModelMountDir = "/model";
inline constexpr int64_t kWorkerUid = 1000;
inline constexpr int64_t kTerminationGraceSeconds = 60;
inline constexpr const char* kAuthMountDir = "/etc/moeserve/auth";

// The volumes and mount paths the template renders itself (spec.worker.volumes and
// volumeMounts may not reuse them).
bool is_operator_volume(std::string_view name);
bool is_operator_mount_path(std::string_view path);

// The directory the worker loads, for a valid spec.model.source.
std::string model_dir(const ModelSource& source);

// The worker container's command, args and MOESERVE_* env for group `group`.
WorkerCommand pod_worker_command(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group);

// spec.template of group `group`'s StatefulSet. Precondition: md.valid().
nlohmann::json render_pod_template(const ModelDeployment& md, const GroupLayout& layout,
                                   int32_t group);

// Identifies the worker template: json_hash of group 0's pod template. Changes exactly
// when something that reaches the pods changes (image, args, env, resources,
// scheduling, layout); autoscaling, cost and replicas do not change it.
std::string template_hash(const ModelDeployment& md, const GroupLayout& layout);

}  // namespace moeserve::deployment
