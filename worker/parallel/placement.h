// Expert placement: which logical expert each physical expert slot of each rank holds,
// per MoE layer (EPLB's phy2log), with redundant replicas of hot experts.
//
// A group of W ranks has S slots per MoE layer, S divisible by W; rank r holds slots
// [r * S/W, (r + 1) * S/W). phy2log[slot] is the logical expert in that slot; every
// logical expert has at least one slot, and an expert with several slots (replicas)
// has its tokens split across them: choose_slot() spreads one source rank's tokens
// round-robin over the replicas (token t of source r goes to replica (t + r) mod n), so
// each source spreads its own tokens and different sources start on different
// replicas. The split is a pure function of (layer, expert, source rank, token), so it
// is reproducible.
//
// The default placement is contiguous blocks: S = number of experts, slot s holds
// expert s (needs experts divisible by W). A placement file is JSON:
//   {"version": N, "layers": [{"phy2log": [e0, e1, ...]}, ...]}
// with one entry per MoE layer in layer order, or a single entry applied to every MoE
// layer. Every layer has the same number of slots. Errors name the file, the layer
// and the rule broken. Immutable after construction; safe to share between threads.
//
// Which layers are MoE layers is not decided here: every factory takes the list
// (`moe_layers`, decoder layer indices, ascending), and callers pass
// ModelConfig::moe_layers().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace moeserve::parallel {

class ExpertPlacement {
 public:
  // Contiguous blocks over `moe_layers`.
  static StatusOr<ExpertPlacement> contiguous(int world_size, int64_t num_experts,
                                              std::vector<int64_t> moe_layers);
  // From placement JSON text; `source` names it in errors (the file path).
  static StatusOr<ExpertPlacement> parse(const std::string& json_text, const std::string& source,
                                         int world_size, int64_t num_experts,
                                         std::vector<int64_t> moe_layers);
  static StatusOr<ExpertPlacement> load(const std::string& path, int world_size,
                                        int64_t num_experts, std::vector<int64_t> moe_layers);
  // From phy2log per MoE layer (same order as moe_layers), validated; `version` is the
  // placement file's (0: none).
  static StatusOr<ExpertPlacement> create(int world_size, int64_t num_experts,
                                          std::vector<int64_t> moe_layers,
                                          std::vector<std::vector<int32_t>> phy2log,
                                          const std::string& source = "placement",
                                          int64_t version = 0);

  int world_size() const { return world_size_; }
  int64_t num_experts() const { return num_experts_; }
  int64_t num_slots() const { return num_slots_; }
  int64_t slots_per_rank() const { return num_slots_ / world_size_; }
  int64_t version() const { return version_; }
  const std::vector<int64_t>& moe_layers() const { return moe_layers_; }
  // Whether decoder layer `layer` is one of moe_layers() (has an entry).
  bool has_layer(int64_t layer) const;

  // Precondition for the per-layer accessors: has_layer(layer).
  const std::vector<int32_t>& phy2log(int64_t layer) const;
  const std::vector<int32_t>& replicas(int64_t layer, int32_t expert) const;  // slots, ascending
  int rank_of_slot(int64_t slot) const { return static_cast<int>(slot / slots_per_rank()); }
  int64_t first_slot(int rank) const { return rank * slots_per_rank(); }
  // The slot that runs `expert` for token `token` of `source_rank`'s batch.
  int64_t choose_slot(int64_t layer, int32_t expert, int source_rank, int64_t token) const;

 private:
  ExpertPlacement() = default;
  int64_t layer_index(int64_t layer) const { return layer_index_[layer]; }

  int world_size_ = 1;
  int64_t num_experts_ = 0;
  int64_t num_slots_ = 0;
  int64_t version_ = 0;
  std::vector<int64_t> moe_layers_;
  std::vector<int64_t> layer_index_;                        // decoder layer -> entry or -1
  std::vector<std::vector<int32_t>> phy2log_;               // [entry][slot]
  std::vector<std::vector<std::vector<int32_t>>> log2phy_;  // [entry][expert] -> slots
};

}  // namespace moeserve::parallel
