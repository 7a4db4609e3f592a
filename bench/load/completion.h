// One /v1/completions request as bench-load sends it, and what became of it: the status,
// the time to the first token, the gaps between tokens, the tokens generated, and the
// kind of failure if any. The prompt is `prompt_tokens` token ids (exact lengths, no
// tokenizer on the client); ignore_eos makes the output exactly `output_tokens` long.
//
// Outcomes: kOk (200 and, when streamed, every event through [DONE]); kHttpStatus (the
// server answered another status: 429 carries Retry-After, 503 while draining);
// kConnection (no response at all: refused, reset, timed out before the headers);
// kMidStream (200, then the stream broke or carried an error event before [DONE]).
// The SSE scanner is pure; send_completion does the I/O on the calling thread and may
// run on many threads at once with one shared http::Client.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_client.h"

namespace moeserve::load {

enum class Outcome { kOk, kHttpStatus, kConnection, kMidStream };
std::string_view outcome_name(Outcome outcome);

struct CompletionRequest {
  std::string base_url;  // http://host:port
  std::string model;     // "" sends no model field
  int64_t prompt_tokens = 32;
  int64_t output_tokens = 16;
  bool stream = true;
  uint64_t prompt_seed = 0;  // varies the prompt's ids (distinct prompts defeat the cache)
  int64_t timeout_ms = 120000;
  // Optional: incremented while a 200 stream is being read (headers in, [DONE] not yet),
  // so a caller can tell when streams are open.
  std::atomic<int64_t>* open_streams = nullptr;
};

struct CompletionResult {
  Outcome outcome = Outcome::kConnection;
  int http_status = 0;        // 0 without a response
  std::string retry_after;    // the Retry-After header of a refusal, "" when absent
  std::string error;          // what went wrong, for the first-failure log line
  double ttft_s = -1;         // send to the first token (non-streamed: the whole response)
  double e2e_s = -1;          // send to the end
  std::vector<double> itl_s;  // gaps between consecutive tokens (streamed only)
  int64_t output_tokens = 0;  // tokens received
};

// The request body: {"prompt": [ids...], "max_tokens", "ignore_eos", "temperature": 0,
// "stream", ...}; ids are small (< 100, inside any test vocabulary) and derived from
// prompt_seed.
nlohmann::json completion_body(const CompletionRequest& request);

// Splits an SSE body into events as bytes arrive (any split) and classifies each
// complete `data:` event: a token chunk (non-empty choices), another chunk (the usage
// chunk, whose completion_tokens it reads), an error event, or [DONE].
class SseScanner {
 public:
  enum class Kind { kToken, kOther, kError, kDone };
  struct Event {
    Kind kind = Kind::kOther;
    int64_t completion_tokens = -1;  // from a usage object; -1 when the event has none
    friend bool operator==(const Event&, const Event&) = default;
  };
  // Appends bytes; returns the events completed by them, in order.
  std::vector<Event> feed(std::string_view bytes);

 private:
  std::string pending_;
};

CompletionResult send_completion(const http::Client& client, const CompletionRequest& request);

}  // namespace moeserve::load
