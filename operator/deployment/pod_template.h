// The worker pod template of group i of a ModelDeployment x (pure), and its hash.
//
// Container `worker` runs `moeserve-worker serve`:
//   serve --model DIR --host 0.0.0.0 --port P --served-model-name NAME --precision fp8|bf16
//         --world-size W --leader x-g<i>-0.x-ranks.<ns>.svc:RP
//         [--placement /etc/moeserve/placement/placement.json]
//         [--speculative mtp --draft-tokens K] [spec.worker.extraArgs...]
// Environment (set by the operator; spec.worker.env may not use MOESERVE_*):
//   MOESERVE_POD_INDEX     the pod's ordinal (fieldRef on apps.kubernetes.io/pod-index)
//   MOESERVE_RANK          the pod's first rank = pod index x ranksPerPod. With one rank
//                          per pod it is the fieldRef itself; with more, the container's
//                          command is `/bin/sh -c 'export MOESERVE_RANK=$((MOESERVE_POD_INDEX
//                          * R)); exec "$0" "$@"' moeserve-worker serve ...`, which keeps
//                          the arguments an exec-form list.
//   MOESERVE_RANKS_PER_POD R: the pod runs ranks MOESERVE_RANK .. MOESERVE_RANK+R-1, local
//                          rank j on the pod's j-th GPU.
//   MOESERVE_WORLD_SIZE, MOESERVE_LEADER_ADDR (as --world-size/--leader),
//   MOESERVE_DEPLOYMENT (x), MOESERVE_GROUP (i).
// Every rank serves /healthz (liveness, startup) and /readyz (readiness: model loaded
// and group formed) on port P; rank 0 also serves the OpenAI API there.
//
// Model sources: an image path is used as is; pvc://claim/path mounts the claim
// read-only at /model and serves /model/path; hf://org/name downloads into an emptyDir
// at /model/org/name with an init container (spec.model.downloaderImage, running
// huggingface_hub.snapshot_download, with spec.worker.env so HF_TOKEN can be given).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/layout.h"
#include "operator/deployment/types.h"

namespace moeserve::op {

inline constexpr const char* kWorkerContainer = "worker";
inline constexpr const char* kModelMountDir = "/model";
inline constexpr int64_t kWorkerUid = 1000;
inline constexpr int64_t kTerminationGraceSeconds = 60;

// The directory the worker loads, for a valid spec.model.source.
std::string model_dir(const ModelSource& source);

// `serve ...` for group `group` (the container's args, after the binary).
std::vector<std::string> worker_args(const ModelDeployment& md, const GroupLayout& layout,
                                     int32_t group);

// spec.template of group `group`'s StatefulSet. Precondition: md.valid().
nlohmann::json render_pod_template(const ModelDeployment& md, const GroupLayout& layout,
                                   int32_t group);

// Identifies the worker template: json_hash of group 0's pod template. Changes exactly
// when something that reaches the pods changes (image, args, env, resources,
// scheduling, layout); autoscaling, cost and replicas do not change it.
std::string template_hash(const ModelDeployment& md, const GroupLayout& layout);

}  // namespace moeserve::op
