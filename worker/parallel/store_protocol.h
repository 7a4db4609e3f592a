// The wire format of the rendezvous store (store.h): requests and replies as bytes, the
// payload of one frame. Pure; no sockets.
//
// Little-endian. A request is a u8 op then its fields; strings are u32 length + bytes.
//   join: op 1, u32 rank, u32 world_size
//   set:  op 2, string key, string value
//   get:  op 3, string key, u64 timeout_ms
//   wait: op 4, u32 n, n x string key, u64 timeout_ms
// A reply is a u8 status code (StatusCode; 0 = ok) and a string: the value, or the error
// message. Decoding refuses trailing bytes, truncated fields, unknown ops and timeouts
// over kMaxStoreTimeoutMs, so encode(decode(bytes)) == bytes for every accepted payload.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve::parallel {

// Frames (one request or reply) over 1 GiB are refused.
inline constexpr uint32_t kMaxStoreFrameBytes = 1u << 30;
// About 35 years: a longer timeout would overflow the server's clock arithmetic.
inline constexpr uint64_t kMaxStoreTimeoutMs = uint64_t{1} << 40;

enum class StoreOp : uint8_t { kJoin = 1, kSet = 2, kGet = 3, kWait = 4 };

struct StoreRequest {
  StoreOp op = StoreOp::kJoin;
  uint32_t rank = 0;              // join
  uint32_t world_size = 0;        // join
  std::string key;                // set, get
  std::string value;              // set
  std::vector<std::string> keys;  // wait
  uint64_t timeout_ms = 0;        // get, wait

  friend bool operator==(const StoreRequest&, const StoreRequest&) = default;
};

struct StoreReply {
  uint8_t code = 0;     // a StatusCode; 0 = ok
  std::string payload;  // the value, or the error message

  friend bool operator==(const StoreReply&, const StoreReply&) = default;
};

// The fields of `request.op` only; the others are not written.
std::string encode_store_request(const StoreRequest& request);
// invalid_argument "store: malformed request: <what>" for bytes that are no request.
StatusOr<StoreRequest> decode_store_request(std::string_view bytes);

std::string encode_store_reply(const StoreReply& reply);
// invalid_argument "store: malformed reply" for bytes that are no reply.
StatusOr<StoreReply> decode_store_reply(std::string_view bytes);

}  // namespace moeserve::parallel
