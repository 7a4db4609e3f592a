#include "worker/parallel/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace moeserve::parallel {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Waits until `fd` is ready for `events`; deadline_exceeded when it passes first.
Status wait_ready(int fd, short events, Deadline deadline, std::string_view what) {
  for (;;) {
    const auto left = remaining(deadline);
    if (left.count() <= 0) return deadline_exceeded_error(std::string(what) + ": timed out");
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int rv = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (rv > 0) return ok_status();
    if (rv < 0 && errno != EINTR) {
      return unavailable_error(std::string(what) + ": poll: " + errno_text());
    }
  }
}

std::string format_address(const sockaddr_storage& addr, bool with_port) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
    port = ntohs(in->sin6_port);
  }
  return with_port ? std::string(host) + ":" + std::to_string(port) : std::string(host);
}

StatusOr<addrinfo*> resolve(const HostPort& address, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  const std::string port = std::to_string(address.port);
  const char* host = address.host.empty() ? nullptr : address.host.c_str();
  const int rv = ::getaddrinfo(host, port.c_str(), &hints, &result);
  if (rv != 0 || result == nullptr) {
    return unavailable_error("cannot resolve " + address.host + ": " + gai_strerror(rv));
  }
  return result;
}

}  // namespace

Deadline deadline_after(std::chrono::milliseconds timeout) {
  return std::chrono::steady_clock::now() + timeout;
}

std::chrono::milliseconds remaining(Deadline deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                               std::chrono::steady_clock::now());
}

StatusOr<HostPort> parse_host_port(std::string_view text, std::string_view what) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument_error(std::string(what) + ": expected HOST:PORT, got \"" +
                                  std::string(text) + "\"");
  }
  const std::string_view port_text = text.substr(colon + 1);
  int port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
      port > 65535) {
    return invalid_argument_error(std::string(what) + ": bad port in \"" + std::string(text) +
                                  "\"");
  }
  return HostPort{std::string(text.substr(0, colon)), static_cast<uint16_t>(port)};
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket::Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

StatusOr<Socket> Socket::connect(const HostPort& address, Deadline deadline) {
  MOESERVE_ASSIGN_OR_RETURN(addrinfo * info, resolve(address, false));
  Socket s(::socket(info->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const std::string where = "connect " + address.host + ":" + std::to_string(address.port);
  if (!s.valid()) {
    ::freeaddrinfo(info);
    return unavailable_error(where + ": socket: " + errno_text());
  }
  const int rv = ::connect(s.fd_, info->ai_addr, info->ai_addrlen);
  ::freeaddrinfo(info);
  if (rv < 0 && errno != EINPROGRESS) return unavailable_error(where + ": " + errno_text());
  if (rv < 0) {
    MOESERVE_RETURN_IF_ERROR(wait_ready(s.fd_, POLLOUT, deadline, where));
    int error = 0;
    socklen_t len = sizeof(error);
    ::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) return unavailable_error(where + ": " + std::strerror(error));
  }
  int one = 1;
  ::setsockopt(s.fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return s;
}

StatusOr<Socket> Socket::listen(const HostPort& address) {
  MOESERVE_ASSIGN_OR_RETURN(addrinfo * info, resolve(address, true));
  Socket s(::socket(info->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const std::string where = "listen on " + address.host + ":" + std::to_string(address.port);
  if (!s.valid()) {
    ::freeaddrinfo(info);
    return unavailable_error(where + ": socket: " + errno_text());
  }
  int one = 1;
  ::setsockopt(s.fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const int rv = ::bind(s.fd_, info->ai_addr, info->ai_addrlen);
  ::freeaddrinfo(info);
  if (rv < 0) return unavailable_error(where + ": bind: " + errno_text());
  if (::listen(s.fd_, 64) < 0) return unavailable_error(where + ": " + errno_text());
  return s;
}

uint16_t Socket::local_port() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

std::string Socket::local_host() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  return format_address(addr, false);
}

std::string Socket::peer_address() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return format_address(addr, true);
}

StatusOr<Socket> Socket::accept(Deadline deadline) {
  MOESERVE_RETURN_IF_ERROR(wait_ready(fd_, POLLIN, deadline, "accept"));
  const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EINTR) return deadline_exceeded_error("accept: no connection");
    return unavailable_error("accept: " + errno_text());
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Socket(fd);
}

Status Socket::write_all(const void* data, size_t bytes, Deadline deadline) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::send(fd_, p, bytes, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      bytes -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      MOESERVE_RETURN_IF_ERROR(wait_ready(fd_, POLLOUT, deadline, "send"));
      continue;
    }
    return unavailable_error("send: " + errno_text());
  }
  return ok_status();
}

Status Socket::read_all(void* data, size_t bytes, Deadline deadline) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::recv(fd_, p, bytes, 0);
    if (n > 0) {
      p += n;
      bytes -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return unavailable_error("connection closed by peer");
    if (errno == EAGAIN || errno == EINTR) {
      MOESERVE_RETURN_IF_ERROR(wait_ready(fd_, POLLIN, deadline, "receive"));
      continue;
    }
    return unavailable_error("receive: " + errno_text());
  }
  return ok_status();
}

void Socket::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace moeserve::parallel
