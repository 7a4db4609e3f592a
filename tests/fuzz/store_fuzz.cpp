// The rendezvous store's wire format (worker/parallel/store_protocol.h): the first byte
// picks request or reply, the rest is one frame's payload. An accepted payload encodes
// back to exactly its bytes; a refused one is invalid_argument with a message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_check.h"
#include "worker/parallel/store_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve::parallel;
  if (size == 0) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    moeserve::StatusOr<StoreRequest> request = decode_store_request(payload);
    if (!request.ok()) {
      FUZZ_CHECK(request.status().code() == moeserve::StatusCode::kInvalidArgument,
                 request.status().message());
      FUZZ_CHECK(request.status().message().starts_with("store: "), request.status().message());
      return 0;
    }
    FUZZ_CHECK(request->timeout_ms <= kMaxStoreTimeoutMs, "timeout over the bound accepted");
    FUZZ_CHECK(encode_store_request(*request) == payload, "request does not encode back");
  } else {
    moeserve::StatusOr<StoreReply> reply = decode_store_reply(payload);
    if (!reply.ok()) return 0;
    FUZZ_CHECK(encode_store_reply(*reply) == payload, "reply does not encode back");
  }
  return 0;
}
