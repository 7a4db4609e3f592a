#include "worker/parallel/store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "worker/parallel/store_protocol.h"

namespace moeserve::parallel {
namespace {

// A frame's buffer grows with the bytes that arrive, this much at a time, so a length
// prefix alone (random bytes, an HTTP probe) reserves no memory.
constexpr size_t kFrameChunkBytes = 64u << 10;
// Waits longer than this are cut to it (a wire value near 2^64 would overflow the clock).
constexpr uint64_t kMaxWaitMs = 24ull * 3600 * 1000;
constexpr auto kForever = std::chrono::steady_clock::time_point::max();
// Extra time the client allows the server beyond a request's own timeout.
constexpr std::chrono::milliseconds kReplySlack(5000);

Status write_frame(Socket& socket, const std::string& payload, Deadline deadline) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  MOESERVE_RETURN_IF_ERROR(socket.write_all(&n, sizeof(n), deadline));
  return socket.write_all(payload.data(), payload.size(), deadline);
}

StatusOr<std::string> read_frame(Socket& socket, Deadline deadline) {
  uint32_t n = 0;
  MOESERVE_RETURN_IF_ERROR(socket.read_all(&n, sizeof(n), deadline));
  if (n > kMaxStoreFrameBytes) {
    return invalid_argument_error("store: frame of " + std::to_string(n) + " bytes is too large");
  }
  std::string payload;
  while (payload.size() < n) {
    const size_t have = payload.size();
    const size_t chunk = std::min<size_t>(kFrameChunkBytes, n - have);
    payload.resize(have + chunk);
    MOESERVE_RETURN_IF_ERROR(socket.read_all(payload.data() + have, chunk, deadline));
  }
  return payload;
}

// A timeout as the request field: negative is 0, and beyond the protocol's bound is the bound.
uint64_t timeout_field(std::chrono::milliseconds timeout) {
  return std::min(static_cast<uint64_t>(std::max<int64_t>(0, timeout.count())), kMaxStoreTimeoutMs);
}

std::string join_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (const std::string& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<StoreServer>> StoreServer::start(const HostPort& address, int world_size,
                                                          std::chrono::milliseconds join_timeout) {
  if (world_size < 1) return invalid_argument_error("store: world size must be at least 1");
  MOESERVE_ASSIGN_OR_RETURN(Socket listener, Socket::listen(address));
  std::unique_ptr<StoreServer> server(
      new StoreServer(std::move(listener), world_size, join_timeout));
  server->acceptor_ = std::thread([s = server.get()] { s->accept_loop(); });
  return server;
}

StoreServer::StoreServer(Socket listener, int world_size, std::chrono::milliseconds join_timeout)
    : listener_(std::move(listener)),
      world_size_(world_size),
      join_timeout_(join_timeout),
      port_(listener_.local_port()) {}

StoreServer::~StoreServer() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& c : connections_) c->shutdown();
  }
  changed_.notify_all();
  acceptor_.join();
  for (std::thread& t : threads_) t.join();
}

std::vector<int> StoreServer::joined_ranks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int> ranks;
  for (const auto& [rank, peer] : joined_) ranks.push_back(rank);
  return ranks;
}

void StoreServer::accept_loop() {
  while (!stopping_) {
    StatusOr<Socket> accepted = listener_.accept(deadline_after(std::chrono::milliseconds(100)));
    if (!accepted.ok()) continue;
    auto connection = std::make_shared<Socket>(std::move(accepted).value());
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) break;
    connections_.push_back(connection);
    threads_.emplace_back([this, connection] { serve(connection); });
  }
}

void StoreServer::serve(std::shared_ptr<Socket> connection) {
  const std::string peer = connection->peer_address();
  int joined_rank = -1;
  const Deadline join_deadline = deadline_after(join_timeout_);
  while (!stopping_) {
    StatusOr<std::string> request =
        read_frame(*connection, joined_rank >= 0 ? kForever : join_deadline);
    if (!request.ok()) {
      if (joined_rank < 0 && !stopping_) {
        log::warn("rendezvous store dropped a connection that did not join",
                  {{"peer", peer}, {"error", request.status().to_string()}});
      }
      break;
    }
    auto [code, payload] = handle(*request, &joined_rank, peer);
    const std::string reply = encode_store_reply({static_cast<uint8_t>(code), std::move(payload)});
    if (!write_frame(*connection, reply, deadline_after(kReplySlack)).ok()) break;
    // A peer whose first request is not a valid join is not a rank: answer, then hang up.
    if (joined_rank < 0) break;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (joined_rank >= 0) {
    joined_.erase(joined_rank);
    if (!stopping_)
      log::info("rank left the rendezvous store", {{"rank", joined_rank}, {"peer", peer}});
  }
  connection->shutdown();
}

std::pair<StatusCode, std::string> StoreServer::handle(const std::string& bytes, int* joined_rank,
                                                       const std::string& peer) {
  StatusOr<StoreRequest> decoded = decode_store_request(bytes);
  if (!decoded.ok()) return {decoded.status().code(), decoded.status().message()};
  const StoreRequest& request = *decoded;
  if (request.op != StoreOp::kJoin && *joined_rank < 0) {
    return {StatusCode::kFailedPrecondition, "store: join before any other request"};
  }
  switch (request.op) {
    case StoreOp::kJoin: {
      if (*joined_rank >= 0) return {StatusCode::kFailedPrecondition, "store: already joined"};
      const int rank = static_cast<int>(request.rank);
      auto reply = join(rank, static_cast<int>(request.world_size), peer);
      if (reply.first == StatusCode::kOk) *joined_rank = rank;
      return reply;
    }
    case StoreOp::kSet: {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        values_[request.key] = request.value;
      }
      changed_.notify_all();
      return {StatusCode::kOk, ""};
    }
    case StoreOp::kGet: {
      Status s =
          wait_keys({request.key},
                    std::chrono::milliseconds(std::min<uint64_t>(request.timeout_ms, kMaxWaitMs)));
      if (!s.ok()) return {s.code(), s.message()};
      std::lock_guard<std::mutex> lock(mutex_);
      return {StatusCode::kOk, values_[request.key]};
    }
    case StoreOp::kWait: {
      Status s =
          wait_keys(request.keys,
                    std::chrono::milliseconds(std::min<uint64_t>(request.timeout_ms, kMaxWaitMs)));
      if (!s.ok()) return {s.code(), s.message()};
      return {StatusCode::kOk, ""};
    }
  }
  return {StatusCode::kInternal, "store: unhandled op"};
}

std::pair<StatusCode, std::string> StoreServer::join(int rank, int world_size,
                                                     const std::string& peer) {
  std::string refusal;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (world_size != world_size_) {
      refusal = "world size mismatch: rank " + std::to_string(rank) + " (" + peer +
                ") has --world-size " + std::to_string(world_size) +
                " but the leader (rank 0) has " + std::to_string(world_size_);
    } else if (rank < 0 || rank >= world_size_) {
      refusal =
          "rank " + std::to_string(rank) + " is outside [0, " + std::to_string(world_size_) + ")";
    } else if (auto it = joined_.find(rank); it != joined_.end()) {
      refusal = "duplicate rank: rank " + std::to_string(rank) + " has already joined from " +
                it->second + "; refusing a second rank " + std::to_string(rank) + " from " + peer;
    } else {
      joined_[rank] = peer;
    }
  }
  if (!refusal.empty()) {
    log::error("rendezvous refused a rank", {{"reason", refusal}});
    return {StatusCode::kFailedPrecondition, refusal};
  }
  log::debug("rank joined the rendezvous store", {{"rank", rank}, {"peer", peer}});
  return {StatusCode::kOk, ""};
}

Status StoreServer::wait_keys(const std::vector<std::string>& keys,
                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto all_present = [&] {
    return std::all_of(keys.begin(), keys.end(),
                       [&](const std::string& k) { return values_.count(k) > 0; });
  };
  if (changed_.wait_for(lock, timeout, [&] { return stopping_ || all_present(); }) &&
      all_present()) {
    return ok_status();
  }
  if (stopping_) return unavailable_error("store: the leader is shutting down");
  std::vector<std::string> missing;
  for (const std::string& k : keys) {
    if (values_.count(k) == 0) missing.push_back(k);
  }
  return deadline_exceeded_error("store: keys not set within " + std::to_string(timeout.count()) +
                                 " ms: " + join_keys(missing));
}

StatusOr<std::unique_ptr<StoreClient>> StoreClient::connect(const HostPort& leader, int rank,
                                                            int world_size, Deadline deadline) {
  const std::string where = leader.host + ":" + std::to_string(leader.port);
  auto backoff = std::chrono::milliseconds(50);
  for (;;) {
    StatusOr<Socket> socket = Socket::connect(leader, deadline);
    if (socket.ok()) {
      std::unique_ptr<StoreClient> client(new StoreClient(std::move(socket).value(), where));
      StoreRequest join;
      join.op = StoreOp::kJoin;
      join.rank = static_cast<uint32_t>(rank);
      join.world_size = static_cast<uint32_t>(world_size);
      const std::string request = encode_store_request(join);
      StatusOr<std::string> reply =
          client->call(request, std::max(remaining(deadline), std::chrono::milliseconds(1)));
      if (reply.ok()) return client;
      if (reply.status().code() == StatusCode::kFailedPrecondition) {
        return failed_precondition_error("rendezvous with the leader at " + where +
                                         " refused: " + reply.status().message());
      }
      socket = reply.status();
    }
    if (remaining(deadline) <= backoff) {
      return deadline_exceeded_error("rendezvous: could not join the leader (rank 0) at " + where +
                                     " before the timeout: " + socket.status().message());
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

StatusOr<std::string> StoreClient::call(const std::string& request,
                                        std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Deadline deadline = deadline_after(timeout + kReplySlack);
  Status sent = write_frame(socket_, request, deadline);
  StatusOr<std::string> reply =
      sent.ok() ? read_frame(socket_, deadline) : StatusOr<std::string>(sent);
  if (!reply.ok()) {
    return Status(reply.status().code(),
                  "store at " + leader_ + " (rank 0): " + reply.status().message());
  }
  StatusOr<StoreReply> decoded = decode_store_reply(*reply);
  if (!decoded.ok()) return internal_error("store at " + leader_ + ": malformed reply");
  if (decoded->code != 0) {
    return Status(static_cast<StatusCode>(decoded->code), std::move(decoded->payload));
  }
  return std::move(decoded->payload);
}

Status StoreClient::set(const std::string& key, const std::string& value,
                        std::chrono::milliseconds timeout) {
  StoreRequest request;
  request.op = StoreOp::kSet;
  request.key = key;
  request.value = value;
  return call(encode_store_request(request), timeout).status();
}

StatusOr<std::string> StoreClient::get(const std::string& key, std::chrono::milliseconds timeout) {
  StoreRequest request;
  request.op = StoreOp::kGet;
  request.key = key;
  request.timeout_ms = timeout_field(timeout);
  return call(encode_store_request(request), timeout);
}

Status StoreClient::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  StoreRequest request;
  request.op = StoreOp::kWait;
  request.keys = keys;
  request.timeout_ms = timeout_field(timeout);
  return call(encode_store_request(request), timeout).status();
}

}  // namespace moeserve::parallel
