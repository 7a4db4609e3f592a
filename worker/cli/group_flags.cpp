#include "worker/cli/group_flags.h"

#include <chrono>
#include <fstream>
#include <set>
#include <utility>

#include "common/log.h"
#include "worker/engine/group_step.h"

namespace moeserve::cli {

void add_group_flags(FlagSet& flags, GroupFlags* f) {
  flags.add_int("rank", &f->rank, "this process's rank in its expert-parallel group",
                "MOESERVE_RANK");
  flags.add_int("world-size", &f->world_size, "ranks in the group (one model copy)",
                "MOESERVE_WORLD_SIZE");
  flags.add_string("leader", &f->leader, "HOST:PORT where rank 0 serves the rendezvous store",
                   "MOESERVE_LEADER_ADDR");
  flags.add_string("placement", &f->placement,
                   "expert placement JSON ({\"version\":N,\"layers\":[{\"phy2log\":[...]}]}); "
                   "default: contiguous blocks");
  flags.add_int("collective-timeout-ms", &f->collective_timeout_ms,
                "a collective not finished in this time fails the run (lost rank)");
  flags.add_int("rendezvous-timeout-ms", &f->rendezvous_timeout_ms,
                "time for every rank to join rank 0");
  flags.add_string("check-weights", &f->check_weights,
                   "scan the weights for NaN/Inf at load, failing with the tensor's name: "
                   "sampled (256 windows per large tensor, FP8 scales whole), all, none");
  flags.add_string("weight-memory", &f->weight_memory,
                   "where the weight matrices live: copied (into huge pages at load, each on a "
                   "64-byte line; decode streams them about 1.8x faster; in an "
                   "expert-parallel group only this rank's experts), mapped (the "
                   "checkpoint's page cache), or auto (copied)");
}

model::WeightMemory weight_memory_of(const GroupFlags& f) {
  if (f.weight_memory == "auto") return model::WeightMemory::kCopied;
  return *model::parse_weight_memory(f.weight_memory);
}

Status check_group_flags(const GroupFlags& f) {
  if (f.world_size < 1) return invalid_argument_error("--world-size must be >= 1");
  if (f.rank < 0 || f.rank >= f.world_size) {
    return invalid_argument_error("--rank " + std::to_string(f.rank) + " is outside [0, " +
                                  std::to_string(f.world_size) + ")");
  }
  if (f.world_size > 1 && f.leader.empty()) {
    return invalid_argument_error("--leader HOST:PORT is required with --world-size > 1");
  }
  if (f.world_size == 1 && !f.placement.empty()) {
    return invalid_argument_error("--placement needs --world-size > 1");
  }
  if (f.collective_timeout_ms < 1) {
    return invalid_argument_error("--collective-timeout-ms must be >= 1");
  }
  if (!model::parse_weight_check(f.check_weights)) {
    return invalid_argument_error("--check-weights must be sampled, all or none (got \"" +
                                  f.check_weights + "\")");
  }
  if (f.weight_memory != "auto" && !model::parse_weight_memory(f.weight_memory)) {
    return invalid_argument_error("--weight-memory must be auto, copied or mapped (got \"" +
                                  f.weight_memory + "\")");
  }
  if (f.rendezvous_timeout_ms < 1) {
    return invalid_argument_error("--rendezvous-timeout-ms must be >= 1");
  }
  return ok_status();
}

bool in_group(const GroupFlags& f) { return f.world_size > 1; }

StatusOr<std::unique_ptr<parallel::Group>> join_group(const GroupFlags& f) {
  parallel::GroupOptions options;
  options.rank = static_cast<int>(f.rank);
  options.world_size = static_cast<int>(f.world_size);
  options.leader = f.leader;
  options.collective_timeout = std::chrono::milliseconds(f.collective_timeout_ms);
  options.rendezvous_timeout = std::chrono::milliseconds(f.rendezvous_timeout_ms);
  return parallel::Group::join(options);
}

StatusOr<RankStart> join_and_load(const GroupFlags& f, const std::string& model_dir, bool load_mtp,
                                  std::function<void(double)> on_progress) {
  RankStart start;
  if (in_group(f)) {
    log::info("joining the expert-parallel group",
              {{"rank", f.rank}, {"world_size", f.world_size}, {"leader", f.leader}});
    MOESERVE_ASSIGN_OR_RETURN(start.group, join_group(f));
  }
  model::BindOptions options{.load_mtp = load_mtp,
                             .prefault = true,
                             .check = *model::parse_weight_check(f.check_weights),
                             .memory = weight_memory_of(f),
                             .on_progress = std::move(on_progress)};
  if (in_group(f)) {
    MOESERVE_ASSIGN_OR_RETURN(model::ModelConfig config, model::load_config(model_dir));
    MOESERVE_ASSIGN_OR_RETURN(
        parallel::ExpertPlacement placement,
        engine::initial_group_placement(f.placement, static_cast<int>(f.world_size), config,
                                        model::bound_moe_layers(config, load_mtp)));
    // This rank's (layer, expert) pairs: what it copies into huge pages.
    std::set<std::pair<int64_t, int64_t>> local;
    for (int64_t layer : placement.moe_layers()) {
      const std::vector<int32_t>& phy2log = placement.phy2log(layer);
      const int64_t first = placement.first_slot(static_cast<int>(f.rank));
      for (int64_t s = first; s < first + placement.slots_per_rank(); ++s) {
        local.emplace(layer, phy2log[s]);
      }
    }
    options.copy_routed_expert = [local = std::move(local)](int64_t layer, int64_t expert) {
      return local.count({layer, expert}) != 0;
    };
    start.placement = std::move(placement);
  }
  MOESERVE_ASSIGN_OR_RETURN(model::LoadedModel loaded, model::load_model(model_dir, options));
  start.model = std::make_shared<const model::LoadedModel>(std::move(loaded));
  return start;
}

StatusOr<std::vector<std::vector<int32_t>>> read_batch_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found_error(path + ": cannot open the batch file");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    line.erase(line.find_last_not_of(" \t\r") + 1);
    StatusOr<std::vector<int64_t>> ids = parse_int_list(line);
    if (!ids.ok()) {
      return invalid_argument_error(path + ":" + std::to_string(number) + ": " +
                                    ids.status().message());
    }
    prompts.emplace_back(ids->begin(), ids->end());
  }
  if (prompts.empty()) return invalid_argument_error(path + ": no prompts");
  return prompts;
}

}  // namespace moeserve::cli
