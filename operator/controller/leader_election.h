// Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
// lease 15 s, renew deadline 10 s, retry period 2 s by default.
//
// A candidate takes the lease when it is free, already its own, or expired. Expiry is
// judged by the candidate's own clock from the moment it last saw the lease record change
// (holder or renewTime), never by comparing with the holder's timestamps, so clock skew
// between machines does not matter. Writes are PUTs carrying the observed
// resourceVersion: of two candidates racing for one lease, one gets a conflict.
// The leader renews every retry period; when renewals keep failing for the renew
// deadline it has lost the lease and must stop working (the operator exits).
// On a clean stop the leader releases the lease (empty holder) so another takes over at once.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "operator/kube/client.h"

namespace moeserve::controller {

struct LeaderElectionConfig {
  std::string lease_namespace = "default";
  std::string lease_name = "moeserve-operator";
  std::string identity;  // hostname + random suffix
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// Pure: may `identity` take or keep the lease whose spec is `lease_spec`, which this
// candidate saw change at `observed_change`?
bool lease_available(const nlohmann::json& lease_spec, const std::string& identity,
                     Clock::TimePoint observed_change, Clock::TimePoint now,
                     std::chrono::milliseconds default_duration);

// A random identity: "<hostname>_<8 hex digits>".
std::string make_identity();

class LeaderElector {
 public:
  LeaderElector(const kube::Client& client, LeaderElectionConfig config,
                const Clock* clock = RealClock::instance());

  // One attempt to take or renew the lease; true when this candidate now holds it.
  bool try_acquire_or_renew();
  // Blocks until the lease is held (true) or `stop` is set (false).
  bool acquire(const std::atomic<bool>& stop);
  // While leading: renews every retry period. Returns false when leadership was lost
  // (renewals failed for the renew deadline), true when `stop` was set (the lease is
  // then released).
  bool hold(const std::atomic<bool>& stop);
  // Gives the lease up if held (holder cleared).
  void release();

  bool is_leader() const { return leader_.load(); }
  const std::string& identity() const { return config_.identity; }

 private:
  void sleep_for(std::chrono::milliseconds d, const std::atomic<bool>& stop) const;

  const kube::Client& client_;
  LeaderElectionConfig config_;
  const Clock* clock_;
  std::atomic<bool> leader_{false};
  nlohmann::json observed_spec_;  // last seen lease spec
  Clock::TimePoint observed_change_{};
};

}  // namespace moeserve::controller
