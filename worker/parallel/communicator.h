// Communicator: the collectives a rank group needs for expert parallelism, behind one
// interface with a gloo (CPU, TCP) and an NCCL (GPU) implementation.
//
// Every rank of the group must call the same collectives in the same order (a rank
// with nothing to send still calls, with zero counts). Buffers are host memory for
// gloo and device memory for NCCL. Each call finishes within timeout() or fails:
// deadline_exceeded when a peer sent nothing in time (a hung rank), unavailable when a
// peer's connection broke (a dead rank); the message names the peer rank when known
// ("lost rank 2: ..."). After a failure the communicator is broken: every later call
// returns the first error without communicating, and the group must be rebuilt (in
// practice the process exits and is restarted).
//
// Not thread-safe: one thread drives a communicator.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace moeserve::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Sends send_bytes[p] bytes to rank p and receives recv_bytes[p] bytes from rank p.
  // Both buffers are packed in rank order (rank 0's bytes first). recv_bytes[p] must
  // equal what rank p sends here (exchange_counts() finds it); a mismatch is an error.
  virtual Status all_to_all_v(const void* send, std::span<const int64_t> send_bytes, void* recv,
                              std::span<const int64_t> recv_bytes) = 0;
  // data[i] = sum over ranks of data[i]; every rank gets the same bits (the sum is
  // taken in rank order).
  virtual Status all_reduce_sum(float* data, int64_t count) = 0;
  // recv[r * bytes, (r + 1) * bytes) = rank r's `bytes` bytes of send.
  virtual Status all_gather(const void* send, int64_t bytes, void* recv) = 0;
  // data on every rank = data on `root`.
  virtual Status broadcast(void* data, int64_t bytes, int root) = 0;
  virtual Status barrier() = 0;

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  std::chrono::milliseconds timeout_{30000};
};

// The byte counts each rank will send here: recv_counts[p] = what p passed as
// send_counts[rank()]. One fixed-size all-to-all (host memory).
StatusOr<std::vector<int64_t>> exchange_counts(Communicator& comm,
                                               std::span<const int64_t> send_counts);

// Element-wise maximum of `values` over all ranks (an all-gather; host memory).
StatusOr<std::vector<int64_t>> all_reduce_max(Communicator& comm, std::span<const int64_t> values);

}  // namespace moeserve::parallel
