// The ModelDeployment reconciler: gather -> plan (pure) -> render (pure) -> apply ->
// status (pure) -> write status only if it changed.
//
// Gather reads the informer caches only: the ModelDeployment, the StatefulSets it owns
// (controller ownerReference with its uid), the placement ConfigMap. Apply creates
// missing objects and replaces an object (PUT with the observed resourceVersion) only
// when its moeserve.io/spec-hash differs from the rendered one; a 409 fails the
// reconcile, which the queue retries with backoff, so a stale cache never overwrites a
// newer object. Objects with the right name but another controller are never adopted
// or overwritten (Degraded event). Groups the plan removes are deleted whole (background
// propagation). Invalid specs render nothing: Ready=False InvalidSpec with the field
// messages in status and a Warning event, never a crash loop. While groups are starting
// or rolling the key is requeued so time-based conditions (Degraded) advance.
#pragma once

#include <string>

#include "common/clock.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/deployment/plan.h"
#include "operator/kube/client.h"

namespace moeserve::controller {

class ModelDeploymentReconciler : public Reconciler {
 public:
  ModelDeploymentReconciler(const kube::Client& client, const Informers& informers,
                            EventRecorder* events, const Clock* clock = RealClock::instance());

  ReconcileResult reconcile(const std::string& key) override;

  // Resources of the kinds render() produces.
  static StatusOr<kube::ResourceRef> resource_for_kind(const std::string& kind);

 private:
  op::Observed gather(const nlohmann::json& md_object, const op::ModelDeployment& md) const;
  Status apply(const nlohmann::json& md_object, const nlohmann::json& desired);
  Status remove_group(const nlohmann::json& md_object, const op::ModelDeployment& md,
                      int32_t group);
  Status write_status(const nlohmann::json& md_object, const op::ModelDeployment& md,
                      const op::ModelDeploymentStatus& status);

  const kube::Client& client_;
  const Informers& informers_;
  EventRecorder* events_;
  const Clock* clock_;
};

}  // namespace moeserve::controller
