// Group: one rank's membership in a group of ranks that holds one model copy.
//
// join() performs the rendezvous through rank 0: rank 0 starts the StoreServer at the
// leader address (binding that host and port), every rank connects to it with
// retry/backoff (ranks may start in any order within the rendezvous timeout), joins
// as (rank, world_size) (a wrong world size or a duplicate rank is refused, reported
// by both sides), announces itself under "joined/<rank>" and waits for all the others
// (a timeout lists the ranks still missing), then builds the gloo communicator over
// the interface that reaches rank 0. The collective timeout applies from then on.
//
// Rank 0 keeps serving the store for the group's lifetime, so it must outlive the
// others' use of the store (NCCL ids, later groups); destroying the Group closes it.
// The group is usable from one thread (the one that drives the engine).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/store.h"

namespace moeserve::parallel {

struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  std::string leader;  // "HOST:PORT" of rank 0's store
  std::chrono::milliseconds rendezvous_timeout{60000};
  std::chrono::milliseconds collective_timeout{30000};
};

// Checks ranges and the leader address without connecting.
Status validate(const GroupOptions& options);

class Group {
 public:
  static StatusOr<std::unique_ptr<Group>> join(const GroupOptions& options);
  ~Group();

  int rank() const { return rank_; }
  int size() const { return size_; }
  Communicator& comm() { return *comm_; }
  StoreClient& store() { return *client_; }
  const GroupOptions& options() const { return options_; }

 private:
  Group() = default;

  GroupOptions options_;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<StoreServer> server_;  // rank 0 only
  std::unique_ptr<StoreClient> client_;
  std::unique_ptr<Communicator> comm_;
};

}  // namespace moeserve::parallel
