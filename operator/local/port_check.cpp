#include "operator/local/port_check.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moeserve::local {

Status check_port_free(const std::string& host, const PlannedPort& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port.port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return invalid_argument_error("local: --host " + host +
                                  " is not an IP address: " + ::gai_strerror(rc));
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd < 0) {
    ::freeaddrinfo(found);
    return unavailable_error("local: socket: " + std::string(std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const int rc = ::bind(fd, found->ai_addr, found->ai_addrlen);
  const int bind_errno = errno;
  ::close(fd);
  ::freeaddrinfo(found);
  if (rc == 0) return ok_status();
  const std::string where = "port " + service + " on " + host + " (" + port.use + ")";
  if (bind_errno == EADDRINUSE) {
    return failed_precondition_error(
        "local: " + where + " is already in use by another process; stop that process or change " +
        port.flag + " so that local mode's ports are free");
  }
  return failed_precondition_error("local: cannot bind " + where + ": " +
                                   std::strerror(bind_errno) + "; change " + port.flag);
}

Status check_ports_free(const std::string& host, const std::vector<PlannedPort>& ports) {
  for (const PlannedPort& p : ports) MOESERVE_RETURN_IF_ERROR(check_port_free(host, p));
  return ok_status();
}

}  // namespace moeserve::local
