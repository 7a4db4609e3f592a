// moeserve-operator: flags -> components.
#include <vector>

#include "common/cli.h"
#include "operator/controller/run_operator.h"
#include "operator/local/run_local.h"

namespace {

int run(const std::vector<std::string>& args) { return moeserve::controller::run_operator(args); }
int local(const std::vector<std::string>& args) { return moeserve::local::run_local(args); }

}  // namespace

int main(int argc, char** argv) {
  const std::vector<moeserve::Command> commands = {
      {"run", "reconcile ModelDeployments against a Kubernetes API server (the default)", run},
      {"local", "run a ModelDeployment as local worker processes behind one endpoint", local},
  };
  return moeserve::run_cli(
      "moeserve-operator",
      "Kubernetes operator that reconciles ModelDeployment resources into worker groups.", commands,
      argc, argv, "run");
}
