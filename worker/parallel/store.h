// The rendezvous key-value store of a rank group, served by rank 0 over TCP.
//
// Rank 0 runs a StoreServer at the group's leader address; every rank (rank 0 too)
// connects a StoreClient, which first joins as (rank, world_size). The server refuses
// a join whose world size differs from its own, whose rank is out of range or whose
// rank is already joined, with a message that both sides report. A rank stays joined
// while its connection is open; the server logs ranks that leave.
//
// Operations: set(key, value); get(key), which waits until the key exists; wait(keys).
// Every wait has a timeout (deadline_exceeded naming the missing keys); a lost
// connection is unavailable. Values are arbitrary bytes.
//
// Wire protocol: each message is a u32 (little-endian) byte length followed by that many
// bytes, a request or a reply as store_protocol.h encodes them. Frames over 1 GiB are
// refused; so are malformed requests, with a reply that says what is wrong.
//
// Strangers on the port (random bytes, an HTTP probe, a truncated frame) cost neither a
// crash nor memory beyond the bytes they send: a frame's buffer grows as its bytes
// arrive; counts and timeouts are checked against the frame; a connection whose first
// request is not a valid join is answered (malformed / refused) and closed; one that
// sends no complete join within the join timeout is closed. Joined ranks are unaffected,
// except that a stranger who joins first as a real rank's rank makes that rank's join
// fail with the duplicate-rank refusal (the protocol has no credentials).
//
// Thread-safety: StoreServer is internally synchronised (one thread per connection).
// StoreClient serialises its calls with a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "worker/parallel/socket.h"

namespace moeserve::parallel {

class StoreServer {
 public:
  // Listens on `address` (port 0 picks one) for a group of `world_size` ranks; a
  // connection must complete its join within `join_timeout`.
  static StatusOr<std::unique_ptr<StoreServer>> start(
      const HostPort& address, int world_size,
      std::chrono::milliseconds join_timeout = std::chrono::milliseconds(10000));
  ~StoreServer();  // stops serving and closes every connection
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  uint16_t port() const { return port_; }
  std::vector<int> joined_ranks() const;

 private:
  StoreServer(Socket listener, int world_size, std::chrono::milliseconds join_timeout);
  void accept_loop();
  void serve(std::shared_ptr<Socket> connection);
  // Handles one request; returns the reply code and payload.
  std::pair<StatusCode, std::string> handle(const std::string& request, int* joined_rank,
                                            const std::string& peer);
  std::pair<StatusCode, std::string> join(int rank, int world_size, const std::string& peer);
  Status wait_keys(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  Socket listener_;
  const int world_size_;
  const std::chrono::milliseconds join_timeout_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::string> values_;
  std::map<int, std::string> joined_;  // rank -> peer address
  std::vector<std::shared_ptr<Socket>> connections_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

class StoreClient {
 public:
  // Connects to the leader and joins as `rank` of `world_size`. While the leader is
  // not listening yet, retries with backoff (50 ms doubling to 1 s) until `deadline`.
  // A refused join is failed_precondition with the leader's reason.
  static StatusOr<std::unique_ptr<StoreClient>> connect(const HostPort& leader, int rank,
                                                        int world_size, Deadline deadline);

  Status set(const std::string& key, const std::string& value, std::chrono::milliseconds timeout);
  StatusOr<std::string> get(const std::string& key, std::chrono::milliseconds timeout);
  Status wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  // Numeric address of this end of the connection: the interface that reaches rank 0.
  std::string local_host() const { return socket_.local_host(); }

 private:
  explicit StoreClient(Socket socket, std::string leader)
      : socket_(std::move(socket)), leader_(std::move(leader)) {}
  StatusOr<std::string> call(const std::string& request, std::chrono::milliseconds timeout);

  Socket socket_;
  std::string leader_;
  std::mutex mutex_;
};

}  // namespace moeserve::parallel
