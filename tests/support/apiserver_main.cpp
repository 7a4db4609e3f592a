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
  moeserve::testing::FaultProfile faults;
  int64_t fault_seed = 1;
  int64_t retry_after_s = faults.retry_after_s;
  flags.add_int("fault-seed", &fault_seed, "seed of the random faults");
  flags.add_double("fault-conflict", &faults.conflict, "probability of 409 Conflict on a PUT");
  flags.add_double("fault-gone", &faults.gone,
                   "probability of 410 Expired on a list or watch from a resourceVersion");
  flags.add_double("fault-throttle", &faults.throttle,
                   "probability of 429 TooManyRequests (with Retry-After)");
  flags.add_int("fault-retry-after-seconds", &retry_after_s, "Retry-After of injected 429s");
  flags.add_double("fault-server-error", &faults.server_error, "probability of 500 InternalError");
  flags.add_double("fault-lost-response", &faults.lost_response,
                   "probability that an applied write is answered 504 Timeout");
  flags.add_double("fault-watch-drop", &faults.watch_drop,
                   "probability that a watch's connection is cut");
  flags.add_double("fault-watch-stall", &faults.watch_stall,
                   "probability that a watch goes silent, then is cut");
  flags.add_int("fault-watch-after-ms", &faults.watch_fault_after_ms,
                "a faulted watch is cut or stalls after a random delay up to this");
  flags.add_int("fault-stall-ms", &faults.stall_ms, "how long a stalled watch stays silent");
  flags.add_int("fault-max-latency-ms", &faults.max_latency_ms,
                "every request waits a random delay up to this");
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
  faults.seed = static_cast<uint64_t>(fault_seed);
  faults.retry_after_s = static_cast<int>(retry_after_s);
  if (moeserve::Status valid = server.set_fault_profile(faults); !valid.ok()) {
    std::cerr << valid.to_string() << "\n" << flags.help();
    return 2;
  }
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
