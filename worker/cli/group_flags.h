// The rank-group flags that `generate` and `serve` share, and the batch file of
// `generate`.
//
//   [--rank R --world-size N --leader HOST:PORT [--placement FILE]
//    [--collective-timeout-ms T] [--rendezvous-timeout-ms T]]
// (env MOESERVE_RANK, MOESERVE_WORLD_SIZE, MOESERVE_LEADER_ADDR). Every rank runs the
// same command line but --rank. A world size of 1 is a single process: --leader is then
// ignored. The group protocol itself is worker/engine/group_step.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/status.h"
#include "worker/model/weights.h"
#include "worker/parallel/group.h"
#include "worker/parallel/placement.h"

namespace moeserve::cli {

struct GroupFlags {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string leader;
  std::string placement;
  int64_t collective_timeout_ms = 30000;
  int64_t rendezvous_timeout_ms = 60000;
  std::string check_weights = "sampled";  // model::parse_weight_check
  std::string weight_memory = "auto";     // auto, or model::parse_weight_memory
};

// The weight memory a rank of `f` uses: --weight-memory, where "auto" is copied for a
// single rank and mapped in an expert-parallel group (a copy would hold every expert of
// the model on every rank; each reads only its own). Precondition: check_group_flags(f).
model::WeightMemory weight_memory_of(const GroupFlags& f);

// --rank, --world-size, --leader, --placement, the timeouts, --check-weights (the
// NaN/Inf scan of the weights at load) and --weight-memory.
void add_group_flags(FlagSet& flags, GroupFlags* f);
// invalid_argument naming the flag at fault: a rank outside [0, world size), a group
// without --leader, --placement without a group, a timeout below 1 ms, an unknown
// --check-weights or --weight-memory.
Status check_group_flags(const GroupFlags& f);
// True when the flags describe an expert-parallel group (world size > 1).
bool in_group(const GroupFlags& f);

// Joins the group the flags describe (rendezvous through rank 0).
StatusOr<std::unique_ptr<parallel::Group>> join_group(const GroupFlags& f);

// A rank's start-up, the same for `generate` and `serve`: joins the group when the
// flags describe one (group stays null otherwise), then loads the model folder, with
// its MTP layers when `load_mtp` (every rank of a group alike: the MTP layer's experts
// are sharded like the others). The group forms first, so the rendezvous timeout covers
// start-up skew only.
struct RankStart {
  std::unique_ptr<parallel::Group> group;
  std::shared_ptr<const model::LoadedModel> model;
  // In a group: the placement it starts with (--placement, else contiguous blocks), read
  // before the weights so that this rank copies only its own slots' experts.
  std::optional<parallel::ExpertPlacement> placement;
};
// `on_progress` (optional) gets the share of the weights read, in [0, 1], as loading goes.
StatusOr<RankStart> join_and_load(const GroupFlags& f, const std::string& model_dir, bool load_mtp,
                                  std::function<void(double)> on_progress = nullptr);

// Prompts of a batch file: one line per prompt, comma-separated token ids; blank lines
// are ignored. invalid_argument names the file and line.
StatusOr<std::vector<std::vector<int32_t>>> read_batch_file(const std::string& path);

}  // namespace moeserve::cli
