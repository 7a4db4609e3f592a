#include "bench/load/worker_process.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/http_client.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve::load {

StatusOr<uint16_t> free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return unavailable_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) return unavailable_error("no free loopback port: " + std::string(std::strerror(errno)));
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

bool wait_ready(const std::string& url, std::chrono::milliseconds timeout) {
  http::ClientOptions options;
  options.connect_timeout_ms = 1000;
  options.request_timeout_ms = 1000;
  const http::Client client(options);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    StatusOr<http::ClientResponse> r = client.send({"GET", url + "/readyz", {}, ""});
    if (r.ok() && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::start(const WorkerOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return invalid_argument_error(options.dir + ": " + ec.message());
  const std::string model_dir = options.dir + "/model";
  if (!std::filesystem::exists(model_dir + "/config.json")) {
    fixtures::TinyModelOptions model;
    model.seed = options.model_seed;
    MOESERVE_RETURN_IF_ERROR(fixtures::write_tiny_model(model_dir, model));
  }
  MOESERVE_ASSIGN_OR_RETURN(uint16_t port, free_loopback_port());
  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  w->url_ = "http://127.0.0.1:" + std::to_string(port);
  w->log_path_ = options.dir + "/worker.log";
  std::vector<std::string> argv = {options.binary,
                                   "serve",
                                   "--model",
                                   model_dir,
                                   "--port",
                                   std::to_string(port),
                                   "--served-model-name",
                                   options.served_model_name};
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  MOESERVE_ASSIGN_OR_RETURN(w->child_, w->launcher_.start(argv, {}, w->log_path_));
  if (!wait_ready(w->url_, options.ready_timeout)) {
    w->child_->signal(SIGKILL);
    return unavailable_error("the worker did not become ready within " +
                             std::to_string(options.ready_timeout.count()) + " s; see " +
                             w->log_path_);
  }
  return w;
}

StatusOr<ProcSample> sample_process(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream status(proc + "/status");
  if (!status) return not_found_error("no process " + std::to_string(pid));
  ProcSample s;
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_bytes = std::stoll(line.substr(6)) * 1024;
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(proc + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    s.open_fds += 1;
  }
  if (ec) return not_found_error("no process " + std::to_string(pid) + ": " + ec.message());
  return s;
}

}  // namespace moeserve::load
