// The local platform's plan: the processes that run a ModelDeployment on this machine
// instead of a cluster (the embedded default for demos and development). Pure.
//
// Group g of the deployment becomes `expertParallel` moeserve-worker processes (one per
// rank, whatever ranksPerPod says: a process is the local stand-in for a rank), all on
// `host`. Ports, with stride = port_stride(md) = max(10, ranks + 2) per group:
//   rank r of group g serves HTTP on base_port + g*stride + r,
//   rank 0 of group g is the group's leader (rendezvous) on base_port + g*stride + stride-1.
// Each rank's command line and environment come from worker_command.h, as a pod's do,
// with the rank given literally, --threads threads_per_rank, and neither --precision
// (options.model_dir may stand in for the spec's checkpoint) nor --placement (local
// mode writes no placement file). spec.worker.env is not applied: the processes
// inherit this environment. With api_key_file every rank gets --api-key-file (rank 0
// enforces it on the API; the front door forwards the Authorization header).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "operator/deployment/types.h"

namespace moeserve::local {

struct LocalOptions {
  std::string model_dir;  // overrides spec.model.source
  std::string worker_binary = "moeserve-worker";
  std::string host = "127.0.0.1";
  uint16_t base_port = 8100;
  int64_t threads_per_rank = 1;
  std::string api_key_file;  // "": no authentication (stands in for spec.auth's Secret)
};

struct RankProcess {
  int32_t group = 0;
  int32_t rank = 0;
  uint16_t http_port = 0;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // NAME=value, added to the inherited environment
};

struct GroupProcesses {
  int32_t group = 0;
  std::string endpoint;      // rank 0's base URL: http://host:port
  uint16_t leader_port = 0;  // rank 0's rendezvous store; 0 for a single rank (none)
  std::vector<RankProcess> ranks;
};

// The ports one group takes: ranks + 2, at least 10 (room to grow).
int32_t port_stride(const deployment::ModelDeployment& md);

// Precondition: md.valid(), and base_port + groups x port_stride(md) - 1 <= 65535.
std::vector<GroupProcesses> local_processes(const deployment::ModelDeployment& md, int32_t groups,
                                            const LocalOptions& options);

// A port local mode hands out: what it is for, and the flag that moves it.
struct PlannedPort {
  uint16_t port = 0;
  std::string use;   // e.g. "group 1 rank 0 HTTP API"
  std::string flag;  // e.g. "--base-port"
  friend bool operator==(const PlannedPort&, const PlannedPort&) = default;
};

// The fixed ports of one group: each rank's HTTP API (--base-port), the rendezvous
// store of a multi-rank group (--base-port; the collective connections themselves use
// ports the kernel picks), and any --metrics-port / --grpc-port (control) the spec's
// extraArgs fix (values <= 0 fix none).
std::vector<PlannedPort> group_ports(const GroupProcesses& group);
// The front door's port (--port; 0, an ephemeral one, is left out), then every group's.
std::vector<PlannedPort> planned_ports(const std::vector<GroupProcesses>& groups,
                                       uint16_t front_port);
// invalid_argument when two uses share a port, naming the port, both uses and the flag
// to change.
Status check_distinct_ports(const std::vector<PlannedPort>& ports);

}  // namespace moeserve::local
