// `moeserve-operator local`: the embedded local platform's command.
#pragma once

#include <string>
#include <vector>

namespace moeserve::local {

// Before any worker starts, every port it will hand out (local_plan.h's planned_ports:
// the endpoint, each rank's API, each group's rendezvous store, ports fixed in
// extraArgs) must be distinct and free; one that another process holds is refused with
// the port, its use and the flag to change.
// Returns the exit code: 0 after SIGTERM/SIGINT, 1 when the workers cannot start (a port
// is held, a launch failed), 2 for bad flags, a port range outside 1-65535, two uses of
// one port, or an invalid ModelDeployment (every field error printed).
int run_local(const std::vector<std::string>& args);

}  // namespace moeserve::local
