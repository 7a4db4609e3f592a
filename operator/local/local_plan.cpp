#include "operator/local/local_plan.h"

#include <algorithm>

#include "operator/deployment/layout.h"
#include "operator/deployment/worker_command.h"

namespace moeserve::local {

std::vector<GroupProcesses> local_processes(const deployment::ModelDeployment& md, int32_t groups,
                                            const LocalOptions& options) {
  const deployment::GroupLayout layout = deployment::layout_of(md.spec);
  const int32_t world = layout.ranks_per_group;
  const int32_t stride = std::max(10, world + 2);
  const std::string model = options.model_dir.empty() ? md.spec.model.source : options.model_dir;
  std::vector<GroupProcesses> out;
  for (int32_t g = 0; g < groups; ++g) {
    GroupProcesses group;
    group.group = g;
    const int32_t first_port = options.base_port + g * stride;
    const std::string leader = options.host + ":" + std::to_string(first_port + stride - 1);
    group.endpoint = "http://" + options.host + ":" + std::to_string(first_port);
    for (int32_t r = 0; r < world; ++r) {
      RankProcess p;
      p.group = g;
      p.rank = r;
      p.http_port = static_cast<uint16_t>(first_port + r);
      deployment::WorkerCommandInput in;
      in.worker_binary = options.worker_binary;
      in.model_dir = model;
      in.host = options.host;
      in.port = p.http_port;
      in.served_model_name = deployment::served_model_name(md.spec.model);
      in.speculative = md.spec.speculative;
      in.world_size = world;
      in.leader = leader;
      in.threads = options.threads_per_rank;
      in.deployment = md.metadata.name;
      in.group = g;
      in.rank_source = deployment::RankSource::kLiteral;
      in.rank = r;
      in.extra_args = md.spec.worker.extra_args;
      const deployment::WorkerCommand command = deployment::worker_command(in);
      p.argv = command.argv();
      for (const deployment::EnvVar& var : command.env) {
        p.env.push_back(var.name + "=" + var.value.value_or(""));
      }
      group.ranks.push_back(std::move(p));
    }
    out.push_back(std::move(group));
  }
  return out;
}

}  // namespace moeserve::local
