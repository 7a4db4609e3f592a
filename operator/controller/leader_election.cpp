#include "operator/controller/leader_election.h"

#include <unistd.h>

#include <random>
#include <thread>

#include "common/log.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::controller {
namespace {

std::string now_micro_time(const Clock* clock) {
  std::string s = deployment::format_rfc3339(
      std::chrono::sys_seconds(std::chrono::seconds(clock->unix_seconds())));
  // MicroTime: Kubernetes expects six fractional digits for Lease times.
  return s.substr(0, s.size() - 1) + ".000000Z";
}

// The parts of a lease spec whose change restarts the expiry clock.
nlohmann::json lease_identity(const nlohmann::json& spec) {
  return {{"holderIdentity", spec.value("holderIdentity", "")},
          {"renewTime", spec.value("renewTime", "")},
          {"leaseTransitions", spec.value("leaseTransitions", 0)}};
}

}  // namespace

bool lease_available(const nlohmann::json& lease_spec, const std::string& identity,
                     Clock::TimePoint observed_change, Clock::TimePoint now,
                     std::chrono::milliseconds default_duration) {
  std::string holder = lease_spec.value("holderIdentity", "");
  if (holder.empty() || holder == identity) return true;
  std::chrono::milliseconds duration = default_duration;
  if (lease_spec.contains("leaseDurationSeconds") &&
      lease_spec["leaseDurationSeconds"].is_number()) {
    duration = std::chrono::seconds(lease_spec["leaseDurationSeconds"].get<int64_t>());
  }
  return now >= observed_change + duration;
}

std::string make_identity() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  return std::string(host) + "_" + suffix;
}

LeaderElector::LeaderElector(const kube::Client& client, LeaderElectionConfig config,
                             const Clock* clock)
    : client_(client), config_(std::move(config)), clock_(clock) {}

bool LeaderElector::try_acquire_or_renew() {
  const auto& ref = kube::resources::kLeases;
  const std::string& ns = config_.lease_namespace;
  int64_t duration_s =
      std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration).count();
  std::string now_text = now_micro_time(clock_);
  auto current = client_.get(ref, ns, config_.lease_name);
  if (!current.ok()) {
    if (current.status().code() != StatusCode::kNotFound) {
      log::warn("leader election: cannot read lease", {{"error", current.status().to_string()}});
      leader_ = false;
      return false;
    }
    nlohmann::json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                            {"kind", "Lease"},
                            {"metadata", {{"name", config_.lease_name}, {"namespace", ns}}},
                            {"spec",
                             {{"holderIdentity", config_.identity},
                              {"leaseDurationSeconds", duration_s},
                              {"acquireTime", now_text},
                              {"renewTime", now_text},
                              {"leaseTransitions", 0}}}};
    auto created = client_.create(ref, ns, lease);
    leader_ = created.ok();
    if (created.ok()) {
      log::info("leader election: acquired lease", {{"lease", ns + "/" + config_.lease_name},
                                                    {"identity", config_.identity},
                                                    {"previous_holder", ""}});
      observed_spec_ = lease_identity((*created)["spec"]);
      observed_change_ = clock_->now();
    }
    return leader_;
  }
  nlohmann::json spec = current->value("spec", nlohmann::json::object());
  if (lease_identity(spec) != observed_spec_) {
    observed_spec_ = lease_identity(spec);
    observed_change_ = clock_->now();
  }
  if (!lease_available(spec, config_.identity, observed_change_, clock_->now(),
                       config_.lease_duration)) {
    leader_ = false;
    return false;
  }
  std::string holder = spec.value("holderIdentity", "");
  nlohmann::json updated = *current;
  updated["spec"]["holderIdentity"] = config_.identity;
  updated["spec"]["leaseDurationSeconds"] = duration_s;
  updated["spec"]["renewTime"] = now_text;
  if (holder != config_.identity) {
    updated["spec"]["acquireTime"] = now_text;
    updated["spec"]["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  auto written = client_.update(ref, ns, updated);
  if (!written.ok()) {
    log::debug("leader election: lease update failed", {{"error", written.status().to_string()}});
    leader_ = false;
    return false;
  }
  if (holder != config_.identity) {
    log::info("leader election: acquired lease", {{"lease", ns + "/" + config_.lease_name},
                                                  {"identity", config_.identity},
                                                  {"previous_holder", holder}});
  }
  observed_spec_ = lease_identity((*written)["spec"]);
  observed_change_ = clock_->now();
  leader_ = true;
  return true;
}

void LeaderElector::sleep_for(std::chrono::milliseconds d, const std::atomic<bool>& stop) const {
  auto until = std::chrono::steady_clock::now() + d;
  while (!stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(
        std::min<std::chrono::milliseconds>(d, std::chrono::milliseconds(50)));
  }
}

bool LeaderElector::acquire(const std::atomic<bool>& stop) {
  log::info("leader election: waiting for lease",
            {{"lease", config_.lease_namespace + "/" + config_.lease_name},
             {"identity", config_.identity}});
  while (!stop.load()) {
    if (try_acquire_or_renew()) return true;
    sleep_for(config_.retry_period, stop);
  }
  return false;
}

bool LeaderElector::hold(const std::atomic<bool>& stop) {
  Clock::TimePoint last_renewal = clock_->now();
  while (!stop.load()) {
    sleep_for(config_.retry_period, stop);
    if (stop.load()) break;
    if (try_acquire_or_renew()) {
      last_renewal = clock_->now();
      continue;
    }
    if (clock_->now() - last_renewal >= config_.renew_deadline) {
      log::error("leader election: lost the lease",
                 {{"lease", config_.lease_namespace + "/" + config_.lease_name},
                  {"identity", config_.identity}});
      leader_ = false;
      return false;
    }
  }
  release();
  return true;
}

void LeaderElector::release() {
  if (!leader_.exchange(false)) return;
  auto current = client_.get(kube::resources::kLeases, config_.lease_namespace, config_.lease_name);
  if (!current.ok() || (*current)["spec"].value("holderIdentity", "") != config_.identity) return;
  nlohmann::json updated = *current;
  updated["spec"]["holderIdentity"] = "";
  updated["spec"]["renewTime"] = now_micro_time(clock_);
  auto written = client_.update(kube::resources::kLeases, config_.lease_namespace, updated);
  if (written.ok()) log::info("leader election: released lease", {{"identity", config_.identity}});
}

}  // namespace moeserve::controller
