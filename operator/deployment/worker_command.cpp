#include "operator/deployment/worker_command.h"

#include "operator/deployment/names.h"

namespace moeserve::deployment {
namespace {

EnvVar value_env(const char* name, std::string value) { return {name, std::move(value), nullptr}; }

EnvVar pod_index_env(const char* name) {
  const std::string path = "metadata.labels['" + std::string(kLabelPodIndex) + "']";
  return {name, std::nullopt, {{"fieldRef", {{"fieldPath", path}}}}};
}

}  // namespace

std::vector<std::string> WorkerCommand::argv() const {
  std::vector<std::string> out = command;
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

WorkerCommand worker_command(const WorkerCommandInput& in) {
  WorkerCommand out;
  out.args = {"serve",
              "--model",
              in.model_dir,
              "--host",
              in.host,
              "--port",
              std::to_string(in.port),
              "--served-model-name",
              in.served_model_name};
  if (in.precision)
    out.args.insert(out.args.end(), {"--precision", std::string(precision_name(*in.precision))});
  if (in.speculative.method != SpeculativeMethod::kNone) {
    out.args.insert(out.args.end(),
                    {"--speculative", std::string(speculative_name(in.speculative.method)),
                     "--num-draft-tokens", std::to_string(in.speculative.draft_tokens)});
  }
  out.args.insert(out.args.end(),
                  {"--world-size", std::to_string(in.world_size), "--leader", in.leader});
  if (!in.placement_path.empty())
    out.args.insert(out.args.end(), {"--placement", in.placement_path});
  if (in.threads > 0) out.args.insert(out.args.end(), {"--threads", std::to_string(in.threads)});
  out.args.insert(out.args.end(), in.extra_args.begin(), in.extra_args.end());

  out.command = {in.worker_binary};
  if (in.rank_source == RankSource::kPodIndex) {
    out.env.push_back(pod_index_env("MOESERVE_POD_INDEX"));
    if (in.ranks_per_pod == 1) {
      out.env.push_back(pod_index_env("MOESERVE_RANK"));
    } else {
      out.command = {"/bin/sh", "-c",
                     "export MOESERVE_RANK=$((MOESERVE_POD_INDEX * " +
                         std::to_string(in.ranks_per_pod) + ")); exec \"$0\" \"$@\"",
                     in.worker_binary};
    }
    out.env.push_back(value_env("MOESERVE_RANKS_PER_POD", std::to_string(in.ranks_per_pod)));
  } else {
    out.env.push_back(value_env("MOESERVE_RANK", std::to_string(in.rank)));
  }
  out.env.push_back(value_env("MOESERVE_WORLD_SIZE", std::to_string(in.world_size)));
  out.env.push_back(value_env("MOESERVE_LEADER_ADDR", in.leader));
  out.env.push_back(value_env("MOESERVE_DEPLOYMENT", in.deployment));
  out.env.push_back(value_env("MOESERVE_GROUP", std::to_string(in.group)));
  return out;
}

}  // namespace moeserve::deployment
