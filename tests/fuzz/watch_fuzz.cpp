// The Kubernetes watch stream decoder (operator/kube/watch.h). The input is a stream;
// its first two bytes seed where it is cut into chunks. WatchDecoder fed chunk by chunk
// must yield exactly what parse_watch_event yields line by line on the whole stream:
// the same events in order, the first malformed line as its error, and the bytes after
// the last newline held back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "operator/kube/watch.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using moeserve::kube::WatchEvent;

struct Decoded {
  std::vector<WatchEvent> events;
  bool failed = false;
};

// The stream read a line at a time, up to its first malformed line.
Decoded decode_by_lines(std::string_view stream) {
  Decoded out;
  size_t start = 0;
  for (size_t newline; (newline = stream.find('\n', start)) != std::string_view::npos;) {
    const std::string_view line = stream.substr(start, newline - start);
    start = newline + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    moeserve::StatusOr<WatchEvent> event = moeserve::kube::parse_watch_event(line);
    if (!event.ok()) {
      out.failed = true;
      return out;
    }
    out.events.push_back(std::move(*event));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint32_t cut_seed = data[0] | (uint32_t{data[1]} << 8);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

  moeserve::kube::WatchDecoder decoder;
  Decoded chunked;
  for (size_t at = 0; at < stream.size() && !chunked.failed;) {
    cut_seed = cut_seed * 1103515245u + 12345u;
    const size_t n = std::min<size_t>(stream.size() - at, 1 + (cut_seed >> 16) % 64);
    moeserve::Status status = decoder.feed(stream.substr(at, n), &chunked.events);
    if (!status.ok()) {
      FUZZ_CHECK(status.code() == moeserve::StatusCode::kInvalidArgument, status.message());
      chunked.failed = true;
    }
    at += n;
  }
  const Decoded whole = decode_by_lines(stream);
  FUZZ_CHECK(chunked.failed == whole.failed, "chunked and line-wise decoding disagree on errors");
  FUZZ_CHECK(chunked.events.size() == whole.events.size(), "different numbers of events");
  for (size_t i = 0; i < whole.events.size(); ++i) {
    FUZZ_CHECK(chunked.events[i].type == whole.events[i].type, "event types differ");
    FUZZ_CHECK(chunked.events[i].object == whole.events[i].object, "event objects differ");
    FUZZ_CHECK(chunked.events[i].object.is_object(), "an event object is not an object");
  }
  if (!whole.failed) {
    const size_t last_newline = stream.rfind('\n');
    const size_t tail =
        last_newline == std::string_view::npos ? stream.size() : stream.size() - last_newline - 1;
    FUZZ_CHECK(decoder.pending_bytes() == tail, "the decoder holds back the wrong bytes");
  }
  return 0;
}
