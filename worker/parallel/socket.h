// Blocking TCP sockets with deadlines, for the rendezvous store (store.h).
//
// Every call that can wait takes an absolute deadline and fails with
// deadline_exceeded when it passes; a closed or reset connection is unavailable.
// Addresses are "HOST:PORT" (IPv4 or a resolvable name). Socket owns its descriptor;
// one thread uses a Socket at a time, except shutdown(), which any thread may call to
// wake a blocked reader.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace moeserve::parallel {

using Deadline = std::chrono::steady_clock::time_point;

Deadline deadline_after(std::chrono::milliseconds timeout);
std::chrono::milliseconds remaining(Deadline deadline);

struct HostPort {
  std::string host;
  uint16_t port = 0;
};
// "HOST:PORT" -> HostPort; invalid_argument naming `what` on a missing or bad port.
StatusOr<HostPort> parse_host_port(std::string_view text, std::string_view what);

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // One connection attempt to host:port that gives up at `deadline`.
  static StatusOr<Socket> connect(const HostPort& address, Deadline deadline);
  // A listening socket on host:port (port 0 picks a free one).
  static StatusOr<Socket> listen(const HostPort& address);

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Port this socket is bound to; 0 when not bound.
  uint16_t local_port() const;
  // Numeric address of this end ("127.0.0.1"), the interface that reaches the peer.
  std::string local_host() const;
  std::string peer_address() const;  // "HOST:PORT" of the other end

  // Waits for a connection until `deadline`.
  StatusOr<Socket> accept(Deadline deadline);
  Status write_all(const void* data, size_t bytes, Deadline deadline);
  Status read_all(void* data, size_t bytes, Deadline deadline);

  void shutdown();

 private:
  int fd_ = -1;
};

}  // namespace moeserve::parallel
