// The operator process: configuration, metrics server, leader election, controller.
#pragma once

#include <string>
#include <vector>

namespace moeserve::controller {

// `moeserve-operator [--kubeconfig FILE] [--namespace NS] [--leader-elect] ...`; returns
// the exit code: 0 after SIGTERM/SIGINT, 1 when leadership is lost or the API server
// cannot be configured, 2 for bad flags.
int run_operator(const std::vector<std::string>& args);

}  // namespace moeserve::controller
