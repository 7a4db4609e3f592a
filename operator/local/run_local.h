// `moeserve-operator local`: the embedded local platform's command.
#pragma once

#include <string>
#include <vector>

namespace moeserve::local {

// Returns the exit code: 0 after SIGTERM/SIGINT, 1 when the workers cannot start, 2 for
// bad flags or an invalid ModelDeployment (every field error printed).
int run_local(const std::vector<std::string>& args);

}  // namespace moeserve::local
