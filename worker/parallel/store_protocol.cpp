#include "worker/parallel/store_protocol.h"

#include <cstring>

namespace moeserve::parallel {
namespace {

class Encoder {
 public:
  Encoder& u8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  Encoder& u32(uint32_t v) { return raw(&v, sizeof(v)); }
  Encoder& u64(uint64_t v) { return raw(&v, sizeof(v)); }
  Encoder& str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_ += s;
    return *this;
  }
  std::string take() { return std::move(out_); }

 private:
  Encoder& raw(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string out_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool u8(uint8_t* v) { return raw(v, 1); }
  bool u32(uint32_t* v) { return raw(v, sizeof(*v)); }
  bool u64(uint64_t* v) { return raw(v, sizeof(*v)); }
  bool str(std::string* s) {
    uint32_t n = 0;
    if (!u32(&n) || remaining() < n) return false;
    s->assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  size_t remaining() const { return in_.size() - pos_; }
  bool done() const { return pos_ == in_.size(); }

 private:
  bool raw(void* p, size_t n) {
    if (remaining() < n) return false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

Status malformed(std::string_view what) {
  return invalid_argument_error("store: malformed request: " + std::string(what));
}

Status decode_timeout(Decoder& in, uint64_t* timeout_ms) {
  if (!in.u64(timeout_ms)) return malformed("truncated timeout_ms");
  if (*timeout_ms > kMaxStoreTimeoutMs) {
    return malformed("timeout_ms " + std::to_string(*timeout_ms) + " is over " +
                     std::to_string(kMaxStoreTimeoutMs));
  }
  return ok_status();
}

}  // namespace

std::string encode_store_request(const StoreRequest& request) {
  Encoder out;
  out.u8(static_cast<uint8_t>(request.op));
  switch (request.op) {
    case StoreOp::kJoin: out.u32(request.rank).u32(request.world_size); break;
    case StoreOp::kSet: out.str(request.key).str(request.value); break;
    case StoreOp::kGet: out.str(request.key).u64(request.timeout_ms); break;
    case StoreOp::kWait:
      out.u32(static_cast<uint32_t>(request.keys.size()));
      for (const std::string& key : request.keys) out.str(key);
      out.u64(request.timeout_ms);
      break;
  }
  return out.take();
}

StatusOr<StoreRequest> decode_store_request(std::string_view bytes) {
  Decoder in(bytes);
  uint8_t op = 0;
  if (!in.u8(&op)) return malformed("empty");
  StoreRequest request;
  switch (op) {
    case static_cast<uint8_t>(StoreOp::kJoin):
      request.op = StoreOp::kJoin;
      if (!in.u32(&request.rank) || !in.u32(&request.world_size)) {
        return malformed("truncated join");
      }
      break;
    case static_cast<uint8_t>(StoreOp::kSet):
      request.op = StoreOp::kSet;
      if (!in.str(&request.key) || !in.str(&request.value)) return malformed("truncated set");
      break;
    case static_cast<uint8_t>(StoreOp::kGet):
      request.op = StoreOp::kGet;
      if (!in.str(&request.key)) return malformed("truncated key");
      MOESERVE_RETURN_IF_ERROR(decode_timeout(in, &request.timeout_ms));
      break;
    case static_cast<uint8_t>(StoreOp::kWait): {
      request.op = StoreOp::kWait;
      uint32_t n = 0;
      if (!in.u32(&n)) return malformed("truncated key count");
      // Each key takes at least its 4-byte length: a count the bytes cannot hold is
      // refused before anything is allocated for it.
      if (n > in.remaining() / sizeof(uint32_t)) {
        return malformed(std::to_string(n) + " keys do not fit in " +
                         std::to_string(in.remaining()) + " bytes");
      }
      request.keys.resize(n);
      for (std::string& key : request.keys) {
        if (!in.str(&key)) return malformed("truncated key");
      }
      MOESERVE_RETURN_IF_ERROR(decode_timeout(in, &request.timeout_ms));
      break;
    }
    default: return invalid_argument_error("store: unknown op " + std::to_string(op));
  }
  if (!in.done()) return malformed(std::to_string(in.remaining()) + " trailing bytes");
  return request;
}

std::string encode_store_reply(const StoreReply& reply) {
  return Encoder().u8(reply.code).str(reply.payload).take();
}

StatusOr<StoreReply> decode_store_reply(std::string_view bytes) {
  Decoder in(bytes);
  StoreReply reply;
  if (!in.u8(&reply.code) || !in.str(&reply.payload) || !in.done()) {
    return invalid_argument_error("store: malformed reply");
  }
  return reply;
}

}  // namespace moeserve::parallel
