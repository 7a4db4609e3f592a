// The local platform's plan: the processes that run a ModelDeployment on this machine
// instead of a cluster (the embedded default for demos and development). Pure.
//
// Group g of the deployment becomes `expertParallel` moeserve-worker processes (one per
// rank, whatever ranksPerPod says: a process is the local stand-in for a rank), all on
// `host`. Ports, with stride = max(10, ranks + 2) per group:
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
  std::string endpoint;  // rank 0's base URL: http://host:port
  std::vector<RankProcess> ranks;
};

// Precondition: md.valid().
std::vector<GroupProcesses> local_processes(const deployment::ModelDeployment& md, int32_t groups,
                                            const LocalOptions& options);

}  // namespace moeserve::local
