// The command line and environment of one `moeserve-worker serve` process, for both
// platforms: the pod template (Kubernetes) and `moeserve-operator local` build their
// workers from this one function, and tests/contract parses its output with the
// worker's own flag parser. Pure.
//
//   serve --model DIR --host H --port P --served-model-name NAME [--precision fp8|bf16]
//         [--speculative mtp|ngram --num-draft-tokens K]
//         --world-size W --leader HOST:PORT [--placement FILE] [--threads T] [extra...]
// (the speculative flags only when spec.speculative.method is not none, so that specs
// without speculation render the command line they always did).
// Environment (MOESERVE_*; user variables are the caller's to add after these):
//   rank, from the RankSource:
//     kPodIndex  MOESERVE_POD_INDEX (downward API fieldRef on the pod-index label),
//                MOESERVE_RANK = pod index x ranks per pod: the fieldRef itself with one
//                rank per pod; with R > 1 a fieldRef cannot multiply, so the command is
//                `/bin/sh -c 'export MOESERVE_RANK=$((MOESERVE_POD_INDEX * R)); exec
//                "$0" "$@"' <binary>`, which keeps the arguments an exec-form list,
//                and MOESERVE_RANKS_PER_POD = R;
//     kLiteral   MOESERVE_RANK = the given rank (one process per rank);
//   MOESERVE_WORLD_SIZE and MOESERVE_LEADER_ADDR (as --world-size and --leader),
//   MOESERVE_DEPLOYMENT (the worker's deployment metric label), MOESERVE_GROUP.
// With a world size of 1 the worker ignores the leader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "operator/deployment/types.h"

namespace moeserve::deployment {

enum class RankSource {
  kPodIndex,  // Kubernetes: from the pod's index in its StatefulSet
  kLiteral,   // local processes: given as a number
};

struct WorkerCommandInput {
  std::string worker_binary = "moeserve-worker";  // as the image's PATH or a local path has it
  std::string model_dir;
  std::string host;
  int32_t port = 8000;
  std::string served_model_name;
  // Absent: not passed, so the worker takes the checkpoint's precision (local mode,
  // where --model may stand in for the spec's source).
  std::optional<Precision> precision;
  SpeculativeSpec speculative;  // spec.speculative
  int32_t world_size = 1;
  std::string leader;          // rank 0's rendezvous HOST:PORT
  std::string placement_path;  // "": the worker's default placement
  int64_t threads = 0;         // 0: not passed (the worker uses every hardware thread)
  std::string deployment;
  int32_t group = 0;
  RankSource rank_source = RankSource::kPodIndex;
  int32_t ranks_per_pod = 1;  // kPodIndex
  int32_t rank = 0;           // kLiteral
  std::vector<std::string> extra_args;
};

struct WorkerCommand {
  std::vector<std::string> command;  // the program (behind a shell for rank arithmetic)
  std::vector<std::string> args;     // "serve" and its flags, then the extra args
  std::vector<EnvVar> env;           // values, or fieldRefs for kPodIndex

  std::vector<std::string> argv() const;  // command then args
};

WorkerCommand worker_command(const WorkerCommandInput& input);

}  // namespace moeserve::deployment
