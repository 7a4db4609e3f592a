// Shutdown signals (SIGTERM, SIGINT) delivered to a callback on a dedicated thread, so
// servers drain with ordinary code instead of async-signal-safe handlers.
//
// Call install_shutdown_signals() at the start of main, before any other thread exists:
// it blocks the signals in the calling thread (every later thread inherits the mask) and
// starts a waiter thread that calls `on_signal(signo)` for each signal received. The
// waiter thread is detached and lives until the process exits.
#pragma once

#include <functional>

namespace moeserve {

void install_shutdown_signals(std::function<void(int signo)> on_signal);

}  // namespace moeserve
