// NcclCommunicator: the Communicator over NCCL (GPU, device memory), built only when
// CUDA is found (library moeserve_worker_parallel_nccl).
//
// Rendezvous reuses the group's store: rank 0 creates the NCCL unique id and sets it
// under "<prefix>/id"; the others get it (waiting up to the connect timeout). The
// communicator is created non-blocking, so initialisation and every collective are
// polled against a deadline: when it passes, the communicator is aborted (ncclCommAbort)
// and the call fails with deadline_exceeded; an NCCL error (a peer's connection lost)
// is unavailable. NCCL does not say which peer failed, so these messages cannot name
// the rank; the gloo communicator of the same group can (run a gloo barrier to find it).
//
// All buffers are device memory on this communicator's device; calls are enqueued on
// its own stream and waited for before returning (the results are ready on return).
// exchange_counts()/all_reduce_max() in communicator.h take host memory and are for the
// gloo communicator only. Not thread-safe; one thread drives it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "worker/parallel/communicator.h"
#include "worker/parallel/store.h"

namespace moeserve::parallel {

class NcclCommunicator : public Communicator {
 public:
  // `device`: the CUDA device this rank uses.
  static StatusOr<std::unique_ptr<NcclCommunicator>> create(
      StoreClient& store, int rank, int size, int device, std::chrono::milliseconds connect_timeout,
      const std::string& key_prefix = "nccl");
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status all_to_all_v(const void* send, std::span<const int64_t> send_bytes, void* recv,
                      std::span<const int64_t> recv_bytes) override;
  Status all_reduce_sum(float* data, int64_t count) override;
  Status all_gather(const void* send, int64_t bytes, void* recv) override;
  Status broadcast(void* data, int64_t bytes, int root) override;
  Status barrier() override;

 private:
  struct State;
  NcclCommunicator(std::unique_ptr<State> state, int rank, int size);
  // Waits for the enqueued work (or the group launch) against the call's deadline.
  Status finish(int launched, const char* op);

  std::unique_ptr<State> state_;
  int rank_;
  int size_;
  Status broken_;
};

}  // namespace moeserve::parallel
