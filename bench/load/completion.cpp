#include "bench/load/completion.h"

#include <chrono>

namespace moeserve::load {
namespace {

using SteadyClock = std::chrono::steady_clock;

double seconds_between(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// completion_tokens of a usage object in `event`, or -1.
int64_t usage_tokens(std::string_view event) {
  const size_t at = event.find("\"completion_tokens\":");
  if (at == std::string_view::npos) return -1;
  int64_t n = 0;
  for (size_t i = at + 20; i < event.size() && event[i] >= '0' && event[i] <= '9'; ++i) {
    n = n * 10 + (event[i] - '0');
  }
  return n;
}

}  // namespace

std::string_view outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk: return "ok";
    case Outcome::kHttpStatus: return "http_status";
    case Outcome::kConnection: return "connection";
    case Outcome::kMidStream: return "mid_stream";
  }
  return "unknown";
}

nlohmann::json completion_body(const CompletionRequest& request) {
  nlohmann::json ids = nlohmann::json::array();
  uint64_t x = request.prompt_seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < std::max<int64_t>(1, request.prompt_tokens); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ids.push_back(static_cast<int64_t>(1 + x % 99));
  }
  nlohmann::json body = {{"prompt", std::move(ids)},
                         {"max_tokens", std::max<int64_t>(1, request.output_tokens)},
                         {"ignore_eos", true},
                         {"temperature", 0},
                         {"stream", request.stream}};
  if (request.stream) body["stream_options"] = {{"include_usage", true}};
  if (!request.model.empty()) body["model"] = request.model;
  return body;
}

std::vector<SseScanner::Event> SseScanner::feed(std::string_view bytes) {
  pending_.append(bytes);
  std::vector<Event> events;
  size_t start = 0;
  while (true) {
    const size_t end = pending_.find("\n\n", start);
    if (end == std::string::npos) break;
    const std::string_view event(pending_.data() + start, end - start);
    start = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;  // comments, keep-alives
    const std::string_view data = event.substr(6);
    Event e;
    e.completion_tokens = usage_tokens(data);
    if (data == "[DONE]") {
      e.kind = Kind::kDone;
    } else if (data.find("\"error\":") != std::string_view::npos &&
               data.find("\"choices\"") == std::string_view::npos) {
      e.kind = Kind::kError;
    } else if (data.find("\"choices\":[]") != std::string_view::npos) {
      e.kind = Kind::kOther;
    } else {
      e.kind = Kind::kToken;
    }
    events.push_back(e);
  }
  pending_.erase(0, start);
  return events;
}

CompletionResult send_completion(const http::Client& client, const CompletionRequest& request) {
  CompletionResult result;
  const std::string body = completion_body(request).dump();
  const http::ClientRequest http_request{"POST",
                                         request.base_url + "/v1/completions",
                                         {{"Content-Type", "application/json"}},
                                         body,
                                         request.timeout_ms};
  const auto sent = SteadyClock::now();
  if (!request.stream) {
    StatusOr<http::ClientResponse> r = client.send(http_request);
    result.e2e_s = seconds_between(sent, SteadyClock::now());
    if (!r.ok()) {
      result.error = r.status().to_string();
      return result;
    }
    result.http_status = r->status;
    if (r->status != 200) {
      result.outcome = Outcome::kHttpStatus;
      result.retry_after = r->header("retry-after");
      result.error = r->body.substr(0, 300);
      return result;
    }
    result.outcome = Outcome::kOk;
    result.ttft_s = result.e2e_s;
    result.output_tokens = std::max<int64_t>(0, usage_tokens(r->body));
    return result;
  }
  StatusOr<std::unique_ptr<http::ResponseStream>> stream = client.open(http_request);
  if (!stream.ok()) {
    result.e2e_s = seconds_between(sent, SteadyClock::now());
    result.error = stream.status().to_string();
    return result;
  }
  http::ResponseStream& s = **stream;
  result.http_status = s.status();
  if (s.status() != 200) {
    result.outcome = Outcome::kHttpStatus;
    result.retry_after = s.header("retry-after");
    while (!s.done()) {
      StatusOr<std::string> piece = s.read_some();
      if (!piece.ok() || piece->empty()) break;
      if (result.error.size() < 300) result.error += *piece;
    }
    result.e2e_s = seconds_between(sent, SteadyClock::now());
    return result;
  }
  if (request.open_streams) request.open_streams->fetch_add(1);
  SseScanner scanner;
  bool done = false;
  bool error_event = false;
  int64_t token_events = 0;
  int64_t usage = -1;
  SteadyClock::time_point last_token{};
  while (!done && !s.done()) {
    StatusOr<std::string> piece = s.read_some();
    if (!piece.ok()) {
      result.error = piece.status().to_string();
      break;
    }
    if (piece->empty()) break;
    const auto now = SteadyClock::now();
    for (const SseScanner::Event& e : scanner.feed(*piece)) {
      if (e.completion_tokens >= 0) usage = e.completion_tokens;
      if (e.kind == SseScanner::Kind::kToken) {
        if (token_events == 0) {
          result.ttft_s = seconds_between(sent, now);
        } else {
          result.itl_s.push_back(seconds_between(last_token, now));
        }
        last_token = now;
        ++token_events;
      } else if (e.kind == SseScanner::Kind::kError) {
        error_event = true;
      } else if (e.kind == SseScanner::Kind::kDone) {
        done = true;
      }
    }
  }
  if (request.open_streams) request.open_streams->fetch_sub(1);
  result.e2e_s = seconds_between(sent, SteadyClock::now());
  result.output_tokens = usage >= 0 ? usage : token_events;
  if (done && !error_event) {
    result.outcome = Outcome::kOk;
  } else {
    result.outcome = Outcome::kMidStream;
    if (result.error.empty()) {
      result.error =
          error_event ? "an error event in the stream" : "the stream ended before [DONE]";
    }
  }
  return result;
}

}  // namespace moeserve::load
