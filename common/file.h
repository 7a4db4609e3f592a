// Whole-file reads for loaders of small text files (JSON configs, templates).
// Errors name the path: not_found "<path>: cannot open", internal "<path>: read failed".
// Thread-safe (no shared state).
#pragma once

#include <string>

#include "common/status.h"

namespace moeserve {

// The bytes of the file at `path`.
StatusOr<std::string> read_file(const std::string& path);

}  // namespace moeserve
