#include "operator/local/local_plan.h"

#include <algorithm>

#include "operator/deployment/layout.h"

namespace moeserve::local {

std::vector<GroupProcesses> local_processes(const op::ModelDeployment& md, int32_t groups,
                                            const LocalOptions& options) {
  const op::GroupLayout layout = op::layout_of(md.spec);
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
      p.argv = {options.worker_binary,
                "serve",
                "--model",
                model,
                "--host",
                options.host,
                "--port",
                std::to_string(p.http_port),
                "--served-model-name",
                op::served_model_name(md.spec.model),
                "--deployment",
                md.metadata.name,
                "--threads",
                std::to_string(options.threads_per_rank),
                "--grpc-port",
                "-1"};
      for (const auto& arg : md.spec.worker.extra_args) p.argv.push_back(arg);
      p.env = {"MOESERVE_DEPLOYMENT=" + md.metadata.name, "MOESERVE_GROUP=" + std::to_string(g)};
      if (world > 1) {
        p.env.push_back("MOESERVE_RANK=" + std::to_string(r));
        p.env.push_back("MOESERVE_WORLD_SIZE=" + std::to_string(world));
        p.env.push_back("MOESERVE_LEADER_ADDR=" + leader);
      }
      group.ranks.push_back(std::move(p));
    }
    out.push_back(std::move(group));
  }
  return out;
}

}  // namespace moeserve::local
