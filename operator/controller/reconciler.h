// The ModelDeployment reconciler: gather -> plan (pure, once) -> render (pure) -> apply
// -> status (pure, from that plan) -> write status only if it changed.
//
// Gather reads and decides nothing: the informer caches (the ModelDeployment, the
// StatefulSets it owns (controller ownerReference with its uid), the placement
// ConfigMap, the pods) and the autoscaler's latest snapshot, into deployment::Observed. Apply
// creates missing objects and replaces an object (PUT with the observed resourceVersion) only when
// its moeserve.io/spec-hash differs from the rendered one; a 409 fails the reconcile, which the
// queue retries with backoff, so a stale cache never overwrites a newer object. Objects with the
// right name but another controller are never adopted or overwritten (Degraded event). Groups the
// plan removes are deleted whole (background propagation). Invalid specs render nothing:
// Ready=False InvalidSpec with the field messages in status and a Warning event, never a crash
// loop. While groups are starting or rolling the key is requeued so time-based conditions
// (Degraded) advance.
//
// Scale to zero: gather sums the fresh gateway waiting annotations on the ModelDeployment
// (gateway_waiting.h) into the tracked deployment, so the autoscaler wakes a deployment at
// zero when a gateway holds requests for it; the annotation write is itself a watch event,
// so this happens at once. A move to 0 desired groups records "ScaledToZero", a move
// from 0 records "Woken" (both with the autoscaler's reason), other moves "Scaled". With
// no autoscaler decision yet (operator restart), a deployment whose status says 0
// desired groups stays at 0 until the first decision.
//
// Measuring and deciding (optional, AutoscalingHooks): every reconcile of a valid spec
// tracks the deployment in the Autoscaler (rank-0 pod of each group from the pods cache,
// scraped at status.podIP:spec.worker.port), and gather reads its latest snapshot:
// tokens/s (status and cost), the recommended groups (when autoscaling is enabled), and
// expert loads, from which plan() may adopt a new expert map (placement_plan.h) and
// version ConfigMap x-placement. NetworkPolicies render() no longer produces are
// deleted (stale_network_policies). A change of the desired groups records a
// "Scaled" event with the autoscaler's reason; a new placement version records
// "PlacementUpdated"; a spec.replicas the autoscaler overrides (kubectl scale with
// autoscaling enabled) records a Warning "ScaleIgnored" once per new value, beside the
// status condition AutoscalerDecides (status.h). Per-deployment gauges are set after each reconcile
// and removed with the deployment. The autoscaler queues a key when its decision or tokens/s moves;
// besides, each deployment is requeued every `refresh`.
#pragma once

#include <string>

#include "common/clock.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/deployment_gauges.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/deployment/plan.h"
#include "operator/deployment/render.h"
#include "operator/kube/client.h"
#include "operator/placement/propose.h"

namespace moeserve::controller {

struct AutoscalingHooks {
  autoscaler::Autoscaler* autoscaler = nullptr;  // null: no measurements
  autoscaler::DeploymentGauges* gauges = nullptr;
  placement::ProposalOptions placement;
  double max_waiting_per_group = 16;  // autoscaler::PolicySpec::max_waiting_per_group
  // With an autoscaler, every deployment is reconciled again this often, so new rank-0
  // pod addresses are tracked and status, gauges and restarts stay fresh (pod events do
  // not queue the deployment: pods are owned by StatefulSets).
  std::chrono::milliseconds refresh{15000};
  // The operator's own namespace: its pods are admitted to the workers' metrics port
  // (deployment::RenderOptions).
  std::string operator_namespace;
  // Gateway waiting annotations (deployment/gateway_waiting.h) older than this are
  // ignored: the gateway that wrote them has stopped refreshing them.
  std::chrono::seconds gateway_waiting_max_age{60};
  // The gateway's namespace: its pods (app.kubernetes.io/component=gateway) may reach
  // the workers' API port through their NetworkPolicy (deployment::RenderOptions).
  std::string gateway_namespace;
};

class ModelDeploymentReconciler : public Reconciler {
 public:
  ModelDeploymentReconciler(const kube::Client& client, const Informers& informers,
                            EventRecorder* events, const Clock* clock = RealClock::instance(),
                            AutoscalingHooks hooks = {});

  ReconcileResult reconcile(const std::string& key) override;

  // Resources of the kinds render() produces.
  static StatusOr<kube::ResourceRef> resource_for_kind(const std::string& kind);

 private:
  struct Gathered {
    deployment::Observed observed;
    autoscaler::ScrapeTarget target;
    int64_t worker_restarts = 0;
    std::optional<autoscaler::Snapshot> snapshot;
    std::optional<int64_t> gateway_waiting;  // fresh entries of the waiting annotation
  };
  Gathered gather(const nlohmann::json& md_object, const deployment::ModelDeployment& md) const;
  void track(const deployment::ModelDeployment& md, const Gathered& gathered,
             const deployment::Plan& plan);
  void export_gauges(const deployment::ModelDeployment& md,
                     const deployment::ModelDeploymentStatus& status, int64_t worker_restarts);
  void forget(const std::string& key);
  // Scaled and PlacementUpdated events.
  void record_changes(const nlohmann::json& md_object, const deployment::ModelDeployment& md,
                      const Gathered& gathered, const deployment::Plan& plan,
                      const deployment::ModelDeploymentStatus& status);
  // PlacementUpdated (Normal) or PlacementSwitchFailed (Warning) when this reconcile's
  // status ends the last placement switch, and the switch metrics.
  void record_switch_end(const nlohmann::json& md_object, const deployment::ModelDeployment& md,
                         const deployment::ModelDeploymentStatus& status);
  Status apply(const nlohmann::json& md_object, const nlohmann::json& desired);
  // True when some rendered object is not in the informer cache (a create is coming).
  bool missing_any(const deployment::Rendered& rendered) const;
  // A live GET (not the cache): the ModelDeployment still exists with this uid and is
  // not being deleted. Checked before creating, so a deleted owner gets no new objects;
  // an error when the server could not tell (the reconcile is retried, nothing created).
  StatusOr<bool> owner_is_live(const deployment::ModelDeployment& md) const;
  Status remove_network_policy(const deployment::ModelDeployment& md, const std::string& name);
  Status remove_group(const nlohmann::json& md_object, const deployment::ModelDeployment& md,
                      int32_t group);
  Status write_status(const nlohmann::json& md_object, const deployment::ModelDeployment& md,
                      const deployment::ModelDeploymentStatus& status);

  const kube::Client& client_;
  const Informers& informers_;
  EventRecorder* events_;
  const Clock* clock_;
  AutoscalingHooks hooks_;
};

}  // namespace moeserve::controller
