// GlooCommunicator: the Communicator over gloo's TCP transport (CPU, host memory).
//
// The ranks find each other through the rendezvous store (store.h): create() builds a
// gloo context whose full mesh of TCP pairs is wired through a gloo Store adapter over
// the StoreClient, under a key prefix so several groups can share one store.
//
// Collectives are written on gloo's unbound buffers as pairwise exchanges: every rank
// posts all its sends and receives, then waits for each peer's receive in rank order
// with the call's deadline. Waiting per peer is what lets a failure name the peer that
// is lost (dead: its connection closes at once; hung: nothing arrives before the
// deadline). all_reduce_sum is an all-gather followed by a sum in rank order, so every
// rank gets the same bits; it is meant for small vectors (step plans, statistics).
// Zero-byte transfers are skipped (both sides know the counts).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "worker/parallel/communicator.h"
#include "worker/parallel/store.h"

namespace gloo {
class Context;
}

namespace moeserve::parallel {

class GlooCommunicator : public Communicator {
 public:
  // `hostname`: the address peers reach this rank at (e.g. StoreClient::local_host()).
  // Waits up to `connect_timeout` for every rank to publish its address and connect.
  static StatusOr<std::unique_ptr<GlooCommunicator>> create(
      StoreClient& store, int rank, int size, const std::string& hostname,
      std::chrono::milliseconds connect_timeout, const std::string& key_prefix = "gloo");
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status all_to_all_v(const void* send, std::span<const int64_t> send_bytes, void* recv,
                      std::span<const int64_t> recv_bytes) override;
  Status all_reduce_sum(float* data, int64_t count) override;
  Status all_gather(const void* send, int64_t bytes, void* recv) override;
  Status broadcast(void* data, int64_t bytes, int root) override;
  Status barrier() override;

 private:
  struct Transfer {
    int peer;
    char* data;
    int64_t bytes;
  };
  GlooCommunicator(std::shared_ptr<gloo::Context> context, int rank, int size);
  // Posts every send and receive on one fresh slot and waits for all of them.
  Status exchange(const std::vector<Transfer>& sends, const std::vector<Transfer>& recvs,
                  const char* op);

  std::shared_ptr<gloo::Context> context_;
  int rank_;
  int size_;
  Status broken_;
};

}  // namespace moeserve::parallel
