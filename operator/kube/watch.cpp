#include "operator/kube/watch.h"

namespace moeserve::kube {

std::string_view watch_event_type_name(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded: return "ADDED";
    case WatchEventType::kModified: return "MODIFIED";
    case WatchEventType::kDeleted: return "DELETED";
    case WatchEventType::kBookmark: return "BOOKMARK";
    case WatchEventType::kError: return "ERROR";
  }
  return "UNKNOWN";
}

StatusOr<WatchEvent> parse_watch_event(std::string_view line) {
  nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!value.is_object()) {
    return invalid_argument_error("watch: malformed event line: " +
                                  std::string(line.substr(0, 200)));
  }
  auto type = value.find("type");
  auto object = value.find("object");
  if (type == value.end() || !type->is_string() || object == value.end() || !object->is_object()) {
    return invalid_argument_error("watch: event without type or object: " +
                                  std::string(line.substr(0, 200)));
  }
  WatchEvent event;
  const std::string& name = type->get_ref<const std::string&>();
  if (name == "ADDED") {
    event.type = WatchEventType::kAdded;
  } else if (name == "MODIFIED") {
    event.type = WatchEventType::kModified;
  } else if (name == "DELETED") {
    event.type = WatchEventType::kDeleted;
  } else if (name == "BOOKMARK") {
    event.type = WatchEventType::kBookmark;
  } else if (name == "ERROR") {
    event.type = WatchEventType::kError;
  } else {
    return invalid_argument_error("watch: unknown event type \"" + name + "\"");
  }
  event.object = std::move(*object);
  return event;
}

Status WatchDecoder::feed(std::string_view bytes, std::vector<WatchEvent>* events) {
  buffer_.append(bytes);
  size_t start = 0;
  Status status;
  while (true) {
    size_t newline = buffer_.find('\n', start);
    if (newline == std::string::npos) break;
    std::string_view line(buffer_.data() + start, newline - start);
    start = newline + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto event = parse_watch_event(line);
    if (!event.ok()) {
      status = event.status();
      break;
    }
    events->push_back(std::move(*event));
  }
  buffer_.erase(0, start);
  return status;
}

}  // namespace moeserve::kube
