// moeserve-operator: flags -> components.
#include <vector>

#include "common/cli.h"
#include "operator/controller/run_operator.h"

namespace {

int run(const std::vector<std::string>& args) { return moeserve::controller::run_operator(args); }

}  // namespace

int main(int argc, char** argv) {
  const std::vector<moeserve::Command> commands = {
      {"run", "reconcile ModelDeployments against a Kubernetes API server (the default)", run},
  };
  return moeserve::run_cli(
      "moeserve-operator",
      "Kubernetes operator that reconciles ModelDeployment resources into worker groups.", commands,
      argc, argv, "run");
}
