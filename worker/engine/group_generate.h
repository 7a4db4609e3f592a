// The expert-parallel and batch parts of the `moeserve-worker generate` command.
//
//   generate ... [--batch-file FILE]
//                [--rank R --world-size N --leader HOST:PORT [--placement FILE]
//                 [--collective-timeout-ms T] [--rendezvous-timeout-ms T]]
// (env MOESERVE_RANK, MOESERVE_WORLD_SIZE, MOESERVE_LEADER_ADDR). Every rank runs the
// same command line but --rank. --batch-file holds several prompts, one per line as
// comma-separated token ids (blank lines ignored); they run as one batch, and in a
// group they are spread over the ranks round-robin (prompt i on rank i mod N, data
// parallel), the ranks step together, and rank 0 gathers every result and prints them
// in prompt order, one line (or one --json object) per prompt. Other ranks print
// nothing. A lost rank fails the run on every other rank within the collective
// timeout, naming the rank.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/expert_parallel.h"
#include "worker/engine/generate.h"
#include "worker/parallel/group.h"

namespace moeserve::engine {

struct GroupFlags {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string leader;
  std::string placement;
  int64_t collective_timeout_ms = 30000;
  int64_t rendezvous_timeout_ms = 60000;
  std::string batch_file;
};

// --rank, --world-size, --leader, --placement and the timeouts (shared with `serve`).
void add_group_flags(FlagSet& flags, GroupFlags* f);
// --batch-file (`generate` only).
void add_batch_flag(FlagSet& flags, GroupFlags* f);
// True when the flags ask for a rank group (--world-size or --leader given).
bool wants_group(const FlagSet& flags);

// Joins the group the flags describe (rendezvous through rank 0).
StatusOr<std::unique_ptr<parallel::Group>> join_group(const GroupFlags& f);

// Prompts of a batch file: one line per prompt, comma-separated token ids.
StatusOr<std::vector<std::vector<int32_t>>> read_batch_file(const std::string& path);

// Attaches expert parallelism over `group` to `engine`: placement from `placement_path`
// (contiguous blocks when empty).
StatusOr<ExpertParallelDispatcher*> attach_group_experts(Engine& engine, parallel::Group& group,
                                                         const std::string& placement_path);

// Generates `requests` (all ranks pass the same list). Without a group: one batch on
// `engine`. With one: attaches expert parallelism (placement from `placement_path`, or
// contiguous blocks when empty), runs this rank's share (i mod size == rank) stepping
// with the group, and gathers every result to rank 0. Returns all results, in order,
// on rank 0 (and without a group); an empty list on the other ranks.
StatusOr<std::vector<GenerateResult>> generate_in_group(
    Engine& engine, parallel::Group* group, const std::vector<GenerateRequest>& requests,
    const std::string& placement_path);

}  // namespace moeserve::engine
