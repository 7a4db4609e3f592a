// moeserve-operator: flags -> components.
#include <vector>

#include "common/cli.h"

int main(int argc, char** argv) {
  const std::vector<moeserve::Command> commands = {};
  return moeserve::run_cli(
      "moeserve-operator",
      "Kubernetes operator that reconciles ModelDeployment resources into worker groups.",
      commands, argc, argv);
}
