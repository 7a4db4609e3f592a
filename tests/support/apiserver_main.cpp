// moeserve-test-apiserver: the strict in-memory Kubernetes API server of
// tests/support/apiserver.h as a process, for kubectl and multi-process tests.
// Serves plain HTTP on 127.0.0.1 until SIGINT or SIGTERM.
#include <signal.h>

#include <iostream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "tests/support/apiserver.h"

int main(int argc, char** argv) {
  int64_t port = 0;
  int64_t bookmark_interval_ms = 1000;
  int64_t history_limit = 2000;
  moeserve::FlagSet flags("moeserve-test-apiserver --port P [flags]",
                          "A strict in-memory Kubernetes API server for tests (plain HTTP on "
                          "127.0.0.1).");
  flags.add_int("port", &port, "TCP port (0: ephemeral, printed on stdout)");
  flags.add_int("bookmark-interval-ms", &bookmark_interval_ms,
                "Interval of BOOKMARK events on watches that allow them");
  flags.add_int("history-limit", &history_limit,
                "Watch events kept for replay; older resourceVersions get 410 Gone");
  moeserve::Status parsed = flags.parse(std::vector<std::string>(argv + 1, argv + argc));
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (!parsed.ok() || port < 0 || port > 65535 || history_limit < 1) {
    std::cerr << (parsed.ok() ? "invalid --port or --history-limit" : parsed.to_string()) << "\n"
              << flags.help();
    return 2;
  }
  if (moeserve::Status env = moeserve::log::configure_from_env(); !env.ok()) {
    std::cerr << env.to_string() << "\n";
    return 2;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts

  moeserve::testing::ApiServerOptions options;
  options.port = static_cast<uint16_t>(port);
  options.bookmark_interval_ms = bookmark_interval_ms;
  options.history_limit = static_cast<size_t>(history_limit);
  moeserve::testing::ApiServer server(options);
  if (moeserve::Status started = server.start(); !started.ok()) {
    std::cerr << started.to_string() << "\n";
    return 1;
  }
  std::cout << server.url() << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  server.shutdown();
  return 0;
}
