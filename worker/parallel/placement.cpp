#include "worker/parallel/placement.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/placement_file.h"

namespace moeserve::parallel {

StatusOr<ExpertPlacement> ExpertPlacement::contiguous(int world_size, int64_t num_experts,
                                                      std::vector<int64_t> moe_layers) {
  if (world_size >= 1 && num_experts % world_size != 0) {
    return invalid_argument_error(
        "default placement: " + std::to_string(num_experts) + " experts do not split evenly over " +
        std::to_string(world_size) + " ranks; give --placement with a multiple of " +
        std::to_string(world_size) + " slots (redundant replicas)");
  }
  std::vector<int32_t> identity(static_cast<size_t>(num_experts));
  for (int64_t e = 0; e < num_experts; ++e) identity[e] = static_cast<int32_t>(e);
  std::vector<std::vector<int32_t>> phy2log(moe_layers.size(), identity);
  return create(world_size, num_experts, std::move(moe_layers), std::move(phy2log),
                "default placement");
}

StatusOr<ExpertPlacement> ExpertPlacement::create(int world_size, int64_t num_experts,
                                                  std::vector<int64_t> moe_layers,
                                                  std::vector<std::vector<int32_t>> phy2log,
                                                  const std::string& source, int64_t version) {
  if (world_size < 1) return invalid_argument_error(source + ": world size must be at least 1");
  if (num_experts < 1) return invalid_argument_error(source + ": the model has no routed experts");
  if (moe_layers.empty()) return invalid_argument_error(source + ": the model has no MoE layers");
  if (phy2log.size() != moe_layers.size()) {
    return invalid_argument_error(source + ": " + std::to_string(phy2log.size()) +
                                  " layer entries for " + std::to_string(moe_layers.size()) +
                                  " MoE layers");
  }
  ExpertPlacement p;
  p.version_ = version;
  p.world_size_ = world_size;
  p.num_experts_ = num_experts;
  p.num_slots_ = static_cast<int64_t>(phy2log[0].size());
  p.layer_index_.assign(static_cast<size_t>(moe_layers.back() + 1), -1);
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    const int64_t layer = moe_layers[i];
    const std::string where =
        source + ": layer " + std::to_string(layer) + " (MoE layer " + std::to_string(i) + ")";
    const std::vector<int32_t>& slots = phy2log[i];
    if (slots.empty()) return invalid_argument_error(where + ": phy2log is empty");
    if (static_cast<int64_t>(slots.size()) != p.num_slots_) {
      return invalid_argument_error(
          where + ": " + std::to_string(slots.size()) + " slots, but the first MoE layer has " +
          std::to_string(p.num_slots_) + " (every layer needs the same count)");
    }
    if (p.num_slots_ % world_size != 0) {
      return invalid_argument_error(where + ": " + std::to_string(p.num_slots_) +
                                    " slots are not divisible by the world size " +
                                    std::to_string(world_size));
    }
    std::vector<std::vector<int32_t>> log2phy(static_cast<size_t>(num_experts));
    for (size_t s = 0; s < slots.size(); ++s) {
      if (slots[s] < 0 || slots[s] >= num_experts) {
        return invalid_argument_error(where + ": slot " + std::to_string(s) + " holds expert " +
                                      std::to_string(slots[s]) + ", outside [0, " +
                                      std::to_string(num_experts) + ")");
      }
      log2phy[slots[s]].push_back(static_cast<int32_t>(s));
    }
    for (int64_t e = 0; e < num_experts; ++e) {
      if (log2phy[e].empty()) {
        return invalid_argument_error(where + ": logical expert " + std::to_string(e) +
                                      " has no slot");
      }
    }
    p.layer_index_[layer] = static_cast<int64_t>(i);
    p.log2phy_.push_back(std::move(log2phy));
  }
  p.moe_layers_ = std::move(moe_layers);
  p.phy2log_ = std::move(phy2log);
  return p;
}

StatusOr<ExpertPlacement> ExpertPlacement::parse(const std::string& json_text,
                                                 const std::string& source, int world_size,
                                                 int64_t num_experts,
                                                 std::vector<int64_t> moe_layers) {
  MOESERVE_ASSIGN_OR_RETURN(PlacementFile file, parse_placement_file(json_text, source));
  if (file.layers.size() != 1 && file.layers.size() != moe_layers.size()) {
    return invalid_argument_error(source + ": " + std::to_string(file.layers.size()) +
                                  " entries in \"layers\"; the model has " +
                                  std::to_string(moe_layers.size()) +
                                  " MoE layers (give one entry per MoE layer, or one for all)");
  }
  std::vector<std::vector<int32_t>> phy2log = std::move(file.layers);
  if (phy2log.size() == 1) phy2log.resize(moe_layers.size(), phy2log[0]);
  MOESERVE_ASSIGN_OR_RETURN(
      ExpertPlacement p,
      create(world_size, num_experts, std::move(moe_layers), std::move(phy2log), source));
  p.version_ = file.version;
  return p;
}

StatusOr<ExpertPlacement> ExpertPlacement::load(const std::string& path, int world_size,
                                                int64_t num_experts,
                                                std::vector<int64_t> moe_layers) {
  std::ifstream in(path);
  if (!in) return not_found_error(path + ": cannot open the placement file");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path, world_size, num_experts, std::move(moe_layers));
}

bool ExpertPlacement::has_layer(int64_t layer) const {
  return layer >= 0 && layer < static_cast<int64_t>(layer_index_.size()) &&
         layer_index_[layer] >= 0;
}

const std::vector<int32_t>& ExpertPlacement::phy2log(int64_t layer) const {
  return phy2log_[layer_index(layer)];
}

const std::vector<int32_t>& ExpertPlacement::replicas(int64_t layer, int32_t expert) const {
  return log2phy_[layer_index(layer)][expert];
}

int64_t ExpertPlacement::choose_slot(int64_t layer, int32_t expert, int source_rank,
                                     int64_t token) const {
  const std::vector<int32_t>& slots = replicas(layer, expert);
  const int64_t n = static_cast<int64_t>(slots.size());
  return slots[static_cast<size_t>((token + source_rank) % n)];
}

}  // namespace moeserve::parallel
