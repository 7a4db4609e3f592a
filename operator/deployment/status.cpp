#include "operator/deployment/status.h"

#include <algorithm>
#include <cmath>

#include "operator/deployment/names.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

constexpr int kDigits = 3;

// Builds conditions, keeping lastTransitionTime when the status did not move.
class Conditions {
 public:
  Conditions(const std::vector<Condition>& previous, int64_t generation,
             std::chrono::sys_seconds now)
      : previous_(previous), generation_(generation), now_(now) {}

  void set(std::string type, bool status, std::string reason, std::string message) {
    Condition c{std::move(type), status ? "True" : "False", std::move(reason), std::move(message),
                generation_,     format_rfc3339(now_)};
    for (const Condition& p : previous_) {
      if (p.type == c.type && p.status == c.status && !p.last_transition_time.empty()) {
        c.last_transition_time = p.last_transition_time;
      }
    }
    out_.push_back(std::move(c));
  }
  std::vector<Condition> take() { return std::move(out_); }

 private:
  const std::vector<Condition>& previous_;
  int64_t generation_;
  std::chrono::sys_seconds now_;
  std::vector<Condition> out_;
};

std::string fraction(int32_t a, int32_t b, const char* what) {
  return std::to_string(a) + "/" + std::to_string(b) + " " + what;
}

std::string duration_text(std::chrono::seconds s) {
  const int64_t total = s.count();
  if (total >= 3600)
    return std::to_string(total / 3600) + "h" + std::to_string(total % 3600 / 60) + "m";
  if (total >= 60) return std::to_string(total / 60) + "m";
  return std::to_string(total) + "s";
}

// The oldest group past its deadline, for the Degraded message; "" when none.
std::string stuck_group_message(const ModelDeployment& md, const std::vector<ObservedGroup>& live,
                                std::chrono::sys_seconds now) {
  const std::chrono::seconds deadline(md.spec.progress_deadline_seconds);
  for (const ObservedGroup& g : live) {
    if (g.ready() || !g.created_at || now - *g.created_at <= deadline) continue;
    return "group " + group_name(md.metadata.name, g.index) + " not ready for " +
           duration_text(now - *g.created_at) + " (" +
           fraction(g.ready_pods, g.desired_pods, "pods ready") + "); progressDeadlineSeconds is " +
           std::to_string(md.spec.progress_deadline_seconds);
  }
  return "";
}

void set_progressing(const Plan& plan, const std::vector<ObservedGroup>& live, int32_t updated,
                     Conditions* conditions) {
  const GroupDecision& g = plan.groups;
  const int32_t desired = plan.desired_replicas;
  const int32_t current = static_cast<int32_t>(g.current.size());
  const int32_t outdated =
      static_cast<int32_t>(std::count_if(live.begin(), live.end(), [&](const ObservedGroup& o) {
        return o.template_hash != plan.template_hash;
      }));
  if (outdated > 0) {
    conditions->set("Progressing", true, "RollingOut",
                    std::to_string(outdated) + " groups on an old worker template; " +
                        fraction(updated, desired, "groups updated and ready"));
  } else if (current < desired) {
    conditions->set("Progressing", true, "ScalingUp",
                    "creating groups: " + fraction(current, desired, "exist"));
  } else if (!g.remove.empty()) {
    conditions->set("Progressing", true, "ScalingDown",
                    "removing " + std::to_string(g.remove.size()) + " groups to reach " +
                        std::to_string(desired));
  } else if (updated < desired) {
    conditions->set("Progressing", true, "GroupsStarting",
                    fraction(updated, desired, "groups ready"));
  } else {
    conditions->set("Progressing", false, "Complete",
                    std::to_string(desired) + " groups on worker template " + plan.template_hash +
                        " are ready");
  }
}

void sort_by_type(std::vector<Condition>* conditions) {
  std::sort(conditions->begin(), conditions->end(),
            [](const Condition& a, const Condition& b) { return a.type < b.type; });
}

// The fields that need no spec: generation, selector, groups and tokens/s.
ModelDeploymentStatus observed_status(const ModelDeployment& md, const Observed& observed,
                                      std::vector<ObservedGroup>* live) {
  ModelDeploymentStatus s;
  s.observed_generation = md.metadata.generation;
  s.selector = selector_string(leader_selector(md.metadata.name));
  for (const ObservedGroup& g : observed.groups) {
    if (!g.terminating) live->push_back(g);
  }
  s.replicas = static_cast<int32_t>(live->size());
  s.ready_replicas = static_cast<int32_t>(
      std::count_if(live->begin(), live->end(), [](const ObservedGroup& g) { return g.ready(); }));
  if (observed.tokens_per_second) {
    s.tokens_per_second = round_significant(*observed.tokens_per_second, kDigits);
  }
  return s;
}

}  // namespace

double round_significant(double value, int digits) {
  if (value == 0 || !std::isfinite(value)) return value;
  const double scale =
      std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::fabs(value)))));
  return std::round(value * scale) / scale;
}

ModelDeploymentStatus invalid_spec_status(const ModelDeployment& md, const Observed& observed,
                                          std::chrono::sys_seconds now) {
  const ModelDeploymentStatus& previous = md.status;
  std::vector<ObservedGroup> live;
  ModelDeploymentStatus s = observed_status(md, observed, &live);
  Conditions conditions(previous.conditions, md.metadata.generation, now);
  const std::string message = join_errors(md.errors);
  s.desired_replicas = previous.desired_replicas;
  s.updated_replicas = previous.updated_replicas;
  s.placement = previous.placement;
  conditions.set("Ready", false, "InvalidSpec", message);
  conditions.set("Progressing", false, "InvalidSpec", message);
  conditions.set("Degraded", true, "InvalidSpec", message);
  s.conditions = conditions.take();
  return s;
}

namespace {

std::optional<double> rounded(std::optional<double> value) {
  if (value) return round_significant(*value, kDigits);
  return value;
}

// The previous lastSwitch moved on by this reconcile: a new version written starts one
// (InProgress); the groups' reports of the ConfigMap's version end it (Aborted when a
// group aborted it, Committed when every reporting group runs it).
std::optional<PlacementSwitchStatus> placement_switch(const ModelDeployment& md,
                                                      const Observed& observed,
                                                      const PlacementPlan& plan) {
  std::optional<PlacementSwitchStatus> last =
      md.status.placement ? md.status.placement->last_switch : std::nullopt;
  const std::optional<Placement>& current = observed.current_placement;
  if (plan.map && current && plan.map->version > current->version && plan.proposed) {
    PlacementSwitchStatus started;
    started.version = plan.map->version;
    started.result = "InProgress";
    started.balancedness_before = rounded(plan.measured_balancedness ? plan.measured_balancedness
                                                                     : plan.current_balancedness);
    started.balancedness_after = rounded(plan.balancedness);
    return started;
  }
  if (!last || last->result != "InProgress" || !current || last->version != current->version) {
    return last;
  }
  if (!plan.switch_failure.empty()) {
    last->result = "Aborted";
    last->message = plan.switch_failure;
  } else if (plan.groups_reporting > 0 && plan.groups_switched == plan.groups_reporting) {
    last->result = "Committed";
    last->duration_seconds = rounded(plan.switch_seconds);
  }
  return last;
}

}  // namespace

ModelDeploymentStatus compute_status(const ModelDeployment& md, const Observed& observed,
                                     const Plan& p, std::chrono::sys_seconds now) {
  std::vector<ObservedGroup> live;
  ModelDeploymentStatus s = observed_status(md, observed, &live);
  Conditions conditions(md.status.conditions, md.metadata.generation, now);
  s.desired_replicas = p.desired_replicas;
  s.updated_replicas =
      static_cast<int32_t>(std::count_if(live.begin(), live.end(), [&](const ObservedGroup& g) {
        return g.ready() && g.template_hash == p.template_hash;
      }));

  const double usd_per_hour = hourly_cost_usd(md.spec, p.layout, s.replicas);
  if (observed.tokens_per_second && *observed.tokens_per_second > 0 && usd_per_hour > 0) {
    s.cost_per_million_tokens =
        round_significant(usd_per_hour / 3600.0 / *observed.tokens_per_second * 1e6, kDigits);
  }
  if (const std::optional<Placement>& map = p.placement.map) {
    const double balancedness = p.placement.balancedness.value_or(
        uniform_balancedness(map->layers, p.layout.ranks_per_group));
    s.placement = PlacementStatus{map->version, round_significant(balancedness, kDigits)};
    if (p.placement.measured_balancedness) {
      s.placement->measured_balancedness =
          round_significant(*p.placement.measured_balancedness, kDigits);
    }
    s.placement->last_switch = placement_switch(md, observed, p.placement);
  }

  if (p.desired_replicas == 0) {
    const std::optional<int32_t>& idle_s = md.spec.autoscaling.scale_to_zero_after_idle_seconds;
    conditions.set("Ready", false, "ScaledToZero",
                   idle_s && md.spec.autoscaling.enabled
                       ? "0 groups desired: idle for scaleToZeroAfterIdleSeconds " +
                             std::to_string(*idle_s) +
                             "; a request held by moeserve-gateway wakes a group"
                       : "0 groups desired");
  } else if (s.ready_replicas >= p.desired_replicas) {
    conditions.set("Ready", true, "AllGroupsReady",
                   fraction(s.ready_replicas, p.desired_replicas, "groups ready"));
  } else {
    conditions.set("Ready", false, "GroupsNotReady",
                   fraction(s.ready_replicas, p.desired_replicas, "groups ready"));
  }
  set_progressing(p, live, s.updated_replicas, &conditions);
  const std::string stuck = stuck_group_message(md, live, now);
  if (stuck.empty()) {
    conditions.set("Degraded", false, "Healthy", "no group is past its progress deadline");
  } else {
    conditions.set("Degraded", true, "GroupNotReady", stuck);
  }
  if (md.spec.autoscaling.enabled) {
    const AutoscalingSpec& a = md.spec.autoscaling;
    const std::string bounds = "minReplicas..maxReplicas = " + std::to_string(a.min_replicas) +
                               ".." + std::to_string(a.max_replicas);
    if (md.spec.replicas != p.desired_replicas) {
      conditions.set("AutoscalerDecides", true, "SpecReplicasIgnored",
                     "spec.replicas is " + std::to_string(md.spec.replicas) +
                         " but spec.autoscaling is enabled: the autoscaler decides the groups (" +
                         bounds +
                         "); spec.replicas only seeds the count until the first measurement");
    } else {
      conditions.set("AutoscalerDecides", true, "Autoscaling",
                     "the autoscaler decides the groups (" + bounds + ")");
    }
  }
  s.conditions = conditions.take();
  return s;
}

bool status_changed(const ModelDeploymentStatus& before, const ModelDeploymentStatus& after) {
  ModelDeploymentStatus a = before, b = after;
  sort_by_type(&a.conditions);
  sort_by_type(&b.conditions);
  return !(a == b);
}

}  // namespace moeserve::deployment
