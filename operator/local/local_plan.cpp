#include "operator/local/local_plan.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>

#include "operator/deployment/layout.h"
#include "operator/deployment/worker_command.h"

namespace moeserve::local {

int32_t port_stride(const deployment::ModelDeployment& md) {
  return std::max(10, deployment::layout_of(md.spec).ranks_per_group + 2);
}

std::vector<GroupProcesses> local_processes(const deployment::ModelDeployment& md, int32_t groups,
                                            const LocalOptions& options) {
  const int32_t world = deployment::layout_of(md.spec).ranks_per_group;
  const int32_t stride = port_stride(md);
  const std::string model = options.model_dir.empty() ? md.spec.model.source : options.model_dir;
  std::vector<GroupProcesses> out;
  for (int32_t g = 0; g < groups; ++g) {
    GroupProcesses group;
    group.group = g;
    const int32_t first_port = options.base_port + g * stride;
    const std::string leader = options.host + ":" + std::to_string(first_port + stride - 1);
    group.endpoint = "http://" + options.host + ":" + std::to_string(first_port);
    if (world > 1) group.leader_port = static_cast<uint16_t>(first_port + stride - 1);
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
      in.api_key_file = options.api_key_file;
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

namespace {

// The value of `--name V` or `--name=V` in argv, when it is a port number > 0.
std::optional<uint16_t> port_flag(const std::vector<std::string>& argv, const std::string& name) {
  std::optional<uint16_t> found;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string value;
    if (argv[i] == name && i + 1 < argv.size()) {
      value = argv[i + 1];
    } else if (argv[i].rfind(name + "=", 0) == 0) {
      value = argv[i].substr(name.size() + 1);
    } else {
      continue;
    }
    char* end = nullptr;
    const long port = std::strtol(value.c_str(), &end, 10);
    found = (end != value.c_str() && *end == '\0' && port > 0 && port <= 65535)
                ? std::optional<uint16_t>(static_cast<uint16_t>(port))
                : std::nullopt;
  }
  return found;
}

}  // namespace

std::vector<PlannedPort> group_ports(const GroupProcesses& group) {
  std::vector<PlannedPort> out;
  const std::string g = "group " + std::to_string(group.group);
  for (const RankProcess& r : group.ranks) {
    const std::string rank = g + " rank " + std::to_string(r.rank);
    out.push_back({r.http_port, rank + " HTTP API", "--base-port"});
    if (auto p = port_flag(r.argv, "--metrics-port")) {
      out.push_back({*p, rank + " metrics", "spec.worker.extraArgs --metrics-port"});
    }
    if (auto p = port_flag(r.argv, "--grpc-port")) {
      out.push_back({*p, rank + " control (gRPC)", "spec.worker.extraArgs --grpc-port"});
    }
  }
  if (group.leader_port != 0) {
    out.push_back({group.leader_port, g + " rendezvous store (collective setup)", "--base-port"});
  }
  return out;
}

std::vector<PlannedPort> planned_ports(const std::vector<GroupProcesses>& groups,
                                       uint16_t front_port) {
  std::vector<PlannedPort> out;
  if (front_port != 0) out.push_back({front_port, "the OpenAI endpoint", "--port"});
  for (const GroupProcesses& g : groups) {
    for (PlannedPort& p : group_ports(g)) out.push_back(std::move(p));
  }
  return out;
}

Status check_distinct_ports(const std::vector<PlannedPort>& ports) {
  std::map<uint16_t, const PlannedPort*> first;
  for (const PlannedPort& p : ports) {
    auto [it, inserted] = first.emplace(p.port, &p);
    if (inserted) continue;
    const PlannedPort& other = *it->second;
    const std::string change = other.flag == p.flag ? p.flag : other.flag + " or " + p.flag;
    return invalid_argument_error("local: port " + std::to_string(p.port) + " would serve both " +
                                  other.use + " and " + p.use + ": change " + change);
  }
  return ok_status();
}

}  // namespace moeserve::local
