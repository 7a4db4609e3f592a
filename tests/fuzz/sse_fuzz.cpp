// The worker's Server-Sent Events framing (worker/server/openai_protocol.h): write
// events with sse_event, read them back as an SSE client does (the WHATWG event-stream
// rules: lines end at CRLF, LF or CR, "data:" lines with one optional space, a blank
// line dispatches), and compare. Values come from the input: the input itself when it
// is JSON, and stream chunks whose text and reasoning are the input's raw bytes. Every
// event reads back as exactly one event whose data is the value (invalid UTF-8
// replaced by U+FFFD), followed by [DONE].
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_check.h"
#include "worker/server/openai_protocol.h"

namespace {

using nlohmann::json;
using namespace moeserve::server;

// The data of each event in an event stream, per the WHATWG rules (fields other than
// data ignored; a trailing event without its blank line is dropped, as clients do).
std::vector<std::string> read_events(std::string_view stream) {
  std::vector<std::string> events;
  std::string data;
  bool has_data = false;
  size_t start = 0;
  while (start < stream.size()) {
    size_t end = stream.find_first_of("\r\n", start);
    if (end == std::string_view::npos) break;  // an unterminated last line
    const std::string_view line = stream.substr(start, end - start);
    start = end + 1;
    if (stream[end] == '\r' && start < stream.size() && stream[start] == '\n') ++start;
    if (line.empty()) {
      if (has_data) events.push_back(data);
      data.clear();
      has_data = false;
      continue;
    }
    if (line.front() == ':') continue;  // a comment
    const size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (value.starts_with(" ")) value.remove_prefix(1);
    if (field != "data") continue;
    if (has_data) data += '\n';
    data += value;
    has_data = true;
  }
  return events;
}

bool strings_valid(const json& value) {
  try {
    (void)value.dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

void check_round_trip(const json& value) {
  const std::string stream = sse_event(value) + std::string(kSseDone);
  const std::vector<std::string> events = read_events(stream);
  FUZZ_CHECK(events.size() == 2, "expected one event and [DONE], got " +
                                     std::to_string(events.size()) + " in " + stream);
  FUZZ_CHECK(events[1] == "[DONE]", "the stream does not end with [DONE]");
  const json back = json::parse(events[0], nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!back.is_discarded(), "the event's data is not JSON: " + events[0]);
  FUZZ_CHECK(strings_valid(back), "the event's data is not valid UTF-8");
  if (strings_valid(value)) {
    FUZZ_CHECK(back == value, "the event reads back different: " + events[0]);
  } else {
    FUZZ_CHECK(back.dump() == dump_json(value), "lossy event differs from its replacement");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const json parsed = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded()) check_round_trip(parsed);
  check_round_trip(json(std::string(bytes)));

  ResponseMeta meta{"chatcmpl-fuzz", 1700000000, "fuzz-model"};
  ChoiceOutput delta;
  delta.text = std::string(bytes);
  delta.reasoning = std::string(bytes.substr(0, size / 2));
  delta.tool_calls.push_back({0, "call_0", "f", std::string(bytes.substr(size / 2))});
  delta.finish_reason = size % 2 == 0 ? "stop" : "";
  for (Endpoint endpoint : {Endpoint::kCompletions, Endpoint::kChat}) {
    check_round_trip(stream_chunk(endpoint, meta, delta, size % 3 == 0, false, size % 5 == 0));
  }
  return 0;
}
