// Watch events and the incremental decoder of a watch stream.
//
// A watch response is newline-delimited JSON, one {"type": ..., "object": ...} per
// line, delivered in chunks that need not align with lines: one read may hold part of a
// line, or several lines. WatchDecoder buffers the partial tail and yields each complete
// event as soon as its newline arrives. Not thread-safe (one per stream).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::kube {

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

std::string_view watch_event_type_name(WatchEventType type);  // "ADDED", ...

struct WatchEvent {
  WatchEventType type = WatchEventType::kAdded;
  nlohmann::json object;  // the object; for kError a Status object
};

class WatchDecoder {
 public:
  // Appends `bytes` and appends every now-complete event to *events. A malformed line
  // (not JSON, unknown type, missing object) is invalid_argument; the events decoded
  // before it in this call are still appended.
  Status feed(std::string_view bytes, std::vector<WatchEvent>* events);
  // Bytes of an incomplete last line held back.
  size_t pending_bytes() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

// Decodes one line (without its newline).
StatusOr<WatchEvent> parse_watch_event(std::string_view line);

}  // namespace moeserve::kube
