// What the gateway routes to: the served models of the ModelDeployments it knows, and
// each deployment's groups (one rank-0 OpenAI endpoint per group). A Discovery is the
// seam between where that knowledge comes from (the cluster's informers, or local
// mode's runner) and the proxy, which only reads snapshots and reports held demand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve::gateway {

// One group of a deployment: the rank-0 pod that serves its OpenAI API.
struct Upstream {
  std::string id;        // stable across snapshots: "<namespace>/<deployment>/g<index>"
  std::string base_url;  // "http://10.0.0.7:8000" (no trailing slash, no /v1)
  bool ready = false;    // rank 0 reports ready (every rank of the group is up)
  friend bool operator==(const Upstream&, const Upstream&) = default;
};

// One ModelDeployment as the gateway sees it.
struct ServedModel {
  std::string model;       // the OpenAI `model` clients send (served_model_name())
  std::string deployment;  // "<namespace>/<name>"
  std::vector<Upstream> groups;
  // spec.gateway: requests held while no group is ready (0: answer 503 at once).
  int32_t queue_size = 64;
  int32_t queue_timeout_seconds = 300;
  // True when the deployment can wake (scale to zero is on, or groups are starting), so
  // holding a request is worth it; false answers 503 at once when no group is ready.
  bool can_wake = false;
  friend bool operator==(const ServedModel&, const ServedModel&) = default;
};

struct Snapshot {
  std::vector<ServedModel> models;
};

// Thread-safe: snapshot() and report_waiting() are called from request threads.
class Discovery {
 public:
  virtual ~Discovery() = default;
  // The current view; cheap enough to call per request.
  virtual Snapshot snapshot() const = 0;
  // The gateway holds `waiting` requests for `deployment` because it has no ready group
  // (0 once none are held). The source makes that demand visible to whatever wakes a
  // group: the operator (cluster) or the local runner (local mode).
  virtual void report_waiting(const std::string& deployment, int64_t waiting) = 0;
};

}  // namespace moeserve::gateway
