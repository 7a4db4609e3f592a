// PlacementSwitch: one rank's side of a live expert-placement switch, the part of the
// group protocol (group_step.h) that changes which experts a rank's slots hold while
// the group keeps serving.
//
// The protocol, all at step boundaries (between two forwards), driven by rank 0:
//   1. kPlacementPrepare: rank 0 broadcasts the new placement file's text (length, then
//      bytes). Every rank parses it for its own model and world (parse_group_placement)
//      and binds its new slots' views (ExpertParallelDispatcher::bind_slots; FP8 stays
//      FP8), then faults the pages of the experts it did not hold before in on a
//      background thread (the SlotPreparer: MADV_WILLNEED and a read of every page). When
//      the weights were copied at load (WeightMemory::kCopied, where a group rank copies
//      only its own experts), that thread then copies the new experts' matrices into
//      huge pages of their own (copy_matrices) and the new views point there. The batch
//      keeps running on the old placement meanwhile.
//   2. kPlacementPoll, before each later forward (and on idle heartbeats): every rank
//      all-gathers its state (preparing, ready, failed + reason). All ranks see the
//      same gathered states and so decide alike, at the same boundary: any rank failed
//      -> abort (every rank drops what it prepared and keeps the old placement; the
//      reason names the first failed rank); every rank ready -> commit (every rank
//      switches its dispatcher before the next forward, then drops the pages of
//      experts it no longer holds with MADV_DONTNEED: the mapping is private and
//      read-only, so they come back from the file if needed; and frees their copies
//      made by earlier switches); else keep waiting.
// At most one switch is in flight. Rank 0 begins one only for a file whose version is
// above the running one and is not the version that last failed (should_begin).
//
// Outputs do not change across a switch: a token's expert outputs are combined in
// ascending expert order whatever slot or rank ran them (expert_parallel.h).
//
// Thread-safety: begin/poll/should_begin run on the thread that drives the
// communicator (rank 0's scheduler thread, a follower's main thread); report() may be
// called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/expert_parallel.h"
#include "worker/model/weights.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/placement.h"

namespace moeserve::engine {

// The placement for the bound MoE layers `layers` (MTP included) from placement JSON
// text. A file written for the main MoE layers alone (the operator's, from the
// expert-load account, which does not count MTP routing) gives each MTP layer the last
// main layer's entry. `source` names the text in errors.
StatusOr<parallel::ExpertPlacement> parse_group_placement(const std::string& text,
                                                          const std::string& source, int world_size,
                                                          const model::ModelConfig& config,
                                                          const std::vector<int64_t>& layers);

// Makes the weights of newly assigned slots resident. Runs on a background thread;
// returns early (with an error) when `cancel` becomes true.
using SlotPreparer = std::function<Status(const std::vector<const model::Linear*>& added,
                                          const std::atomic<bool>& cancel)>;
// The default SlotPreparer: MADV_WILLNEED over each tensor (weights and block scales),
// then a read of one byte per page.
Status fault_in_pages(const std::vector<const model::Linear*>& added,
                      const std::atomic<bool>& cancel);
// MADV_DONTNEED over the whole pages inside each tensor's bytes (weights and scales) that
// lie in the checkpoint's private read-only mapping, which refaults them from the file.
// Bytes inside `weights.copied_storage` are left alone: anonymous pages dropped read back
// as zeros, and the copy is the only place those weights live.
void drop_pages(const std::vector<const model::Linear*>& removed,
                const model::ModelWeights& weights);

// Huge-page copies of weight matrices (data only: FP8 block scales stay where they are),
// by the address of the data they copy.
using MatrixCopies = std::map<const void*, std::shared_ptr<const uint8_t>>;
// Copies each matrix of `added` that is not already inside `weights.copied_storage` into
// its own line-aligned allocation (transparent huge pages from 2 MiB), then drops the
// source's whole mapped pages. Returns early (with an error) when `cancel` becomes true.
StatusOr<MatrixCopies> copy_matrices(const std::vector<const model::Linear*>& added,
                                     const model::ModelWeights& weights,
                                     const std::atomic<bool>& cancel);
// Points every view of `local` whose data has a copy at the copy.
void use_copies(const MatrixCopies& copies, std::vector<std::vector<MlpWeights>>& local);

// What a poll decided.
struct SwitchOutcome {
  enum class Kind { kPending, kCommitted, kAborted };
  Kind kind = Kind::kPending;
  int64_t version = 0;
  std::string reason;  // kAborted: "rank 2: ..."
  double seconds = 0;  // begin to commit or abort, on this rank's clock
};

// Counters and the last outcome, for metrics and logs.
struct PlacementSwitchReport {
  int64_t running_version = 0;    // the placement dispatching now (0: contiguous default)
  int64_t preparing_version = 0;  // 0 when no switch is in flight
  uint64_t committed = 0;
  uint64_t aborted = 0;
  double last_duration_seconds = 0;  // of the last committed switch
  int64_t failed_version = 0;        // the last aborted version (0: none)
  std::string failure;               // its reason
};

class PlacementSwitch {
 public:
  // `comm`, `dispatcher` and `clock` must outlive the switch. A null clock is the real one.
  PlacementSwitch(parallel::Communicator& comm, ExpertParallelDispatcher& dispatcher,
                  SlotPreparer preparer = fault_in_pages, const Clock* clock = nullptr);
  ~PlacementSwitch();  // cancels and joins a preparation in flight
  PlacementSwitch(const PlacementSwitch&) = delete;
  PlacementSwitch& operator=(const PlacementSwitch&) = delete;

  bool in_flight() const { return prepared_ != nullptr; }

  // Rank 0: whether placement text `text` should start a switch (its version above the
  // running one, not the last failed one). A text that is not a placement file counts
  // as an aborted switch of version 0 with the parse error as its reason.
  bool should_begin(const std::string& text);
  // Step 1 on every rank, after the kPlacementPrepare step kind: rank 0 passes the
  // text; the others pass nothing and receive it. Errors are collective failures only
  // (a bad placement is a failed preparation, decided at the next poll).
  // Precondition: !in_flight().
  Status begin(const std::string& text = {});
  // Step 2 on every rank, after kPlacementPoll. Precondition: in_flight().
  StatusOr<SwitchOutcome> poll();

  PlacementSwitchReport report() const;

 private:
  enum State : int32_t { kPreparing = 1, kReady = 2, kFailed = 3 };
  struct Prepared {
    int64_t version = 0;
    Clock::TimePoint started;
    std::optional<parallel::ExpertPlacement> placement;
    std::vector<std::vector<MlpWeights>> local;
    std::vector<const model::Linear*> removed;
    MatrixCopies copies;  // of the experts this switch adds, when the weights are copied
    std::atomic<int32_t> state{kPreparing};
    std::atomic<bool> cancel{false};
    std::string failure;  // written before state turns kFailed
    std::thread worker;
  };
  void fail_locally(Prepared& p, std::string reason);
  void finish(SwitchOutcome outcome);

  parallel::Communicator& comm_;
  ExpertParallelDispatcher& dispatcher_;
  SlotPreparer preparer_;
  const Clock* clock_;
  std::unique_ptr<Prepared> prepared_;
  // Copies of the experts earlier switches brought here that this rank still holds (the
  // ones copied at load live in the weights' own copy and are never freed).
  MatrixCopies live_copies_;

  mutable std::mutex report_mutex_;
  PlacementSwitchReport report_;
};

}  // namespace moeserve::engine
