// HTTP request parsing as the server configures it (common/http_server.h,
// parse_http_request). The first byte picks the limits: the server's defaults, or small
// ones that the input can exceed (413, 431). A complete request splits its target into
// path and query, lower-cases header names and keeps the body within the limit; written
// back as a plain HTTP/1.1 request with a Content-Length (any chunking undone) it parses
// to the same method, target, headers and body. A refused one is 400, 413 or 431.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using moeserve::http::ParsedHttpRequest;
using moeserve::http::Request;

bool framing_header(const std::string& name) {
  return name == "content-length" || name == "transfer-encoding";
}

std::string write_back(const Request& r) {
  std::string out = r.method + " " + r.target + " HTTP/1.1\r\n";
  for (const auto& [name, value] : r.headers) {
    if (!framing_header(name)) out += name + ": " + value + "\r\n";
  }
  return out + "content-length: " + std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  moeserve::http::ServerOptions limits;
  if (data[0] % 2 == 1) {
    limits.max_body_bytes = 64;
    limits.max_header_bytes = 256;
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const ParsedHttpRequest parsed = moeserve::http::parse_http_request(bytes, limits);
  FUZZ_CHECK(parsed.consumed_bytes <= bytes.size(), "consumed more than the input");
  if (!parsed.complete) {
    FUZZ_CHECK(parsed.error_status == 0 || parsed.error_status == 400 ||
                   parsed.error_status == 413 || parsed.error_status == 431,
               std::to_string(parsed.error_status));
    return 0;
  }
  FUZZ_CHECK(parsed.error_status == 0, "complete and refused");
  const Request& r = parsed.request;
  FUZZ_CHECK(!r.method.empty(), "no method");
  FUZZ_CHECK(r.body.size() <= limits.max_body_bytes, "a body over the limit");
  FUZZ_CHECK(r.path + (r.target.find('?') == std::string::npos ? "" : "?" + r.query) == r.target,
             "path and query do not make the target: " + r.target);
  for (const auto& [name, value] : r.headers) {
    for (char c : name) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "a header name not lower-cased");
  }
  moeserve::http::ServerOptions roomy;
  roomy.max_header_bytes = 1 << 20;
  roomy.max_body_bytes = 1 << 20;
  const std::string written = write_back(r);
  const ParsedHttpRequest again = moeserve::http::parse_http_request(written, roomy);
  FUZZ_CHECK(again.complete && again.consumed_bytes == written.size(),
             "the request written back does not parse: " + written);
  FUZZ_CHECK(again.request.method == r.method && again.request.target == r.target &&
                 again.request.body == r.body,
             "the request changed when written back: " + written);
  size_t i = 0;
  for (const auto& header : r.headers) {
    if (framing_header(header.first)) continue;
    FUZZ_CHECK(i < again.request.headers.size() && again.request.headers[i] == header,
               "header " + header.first + " changed when written back");
    ++i;
  }
  return 0;
}
