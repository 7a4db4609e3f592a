#include "worker/parallel/gloo_communicator.h"

#include <cstring>
#include <exception>
#include <utility>

#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include "common/log.h"

namespace moeserve::parallel {
namespace {

// gloo's Store over the network StoreClient; gloo expects failures as exceptions,
// which create() catches.
class NetworkGlooStore : public gloo::rendezvous::Store {
 public:
  NetworkGlooStore(StoreClient& client, std::string prefix, std::chrono::milliseconds timeout)
      : client_(client), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    check(client_.set(prefix_ + key, std::string(data.begin(), data.end()), timeout_));
  }
  std::vector<char> get(const std::string& key) override {
    StatusOr<std::string> value = client_.get(prefix_ + key, timeout_);
    check(value.status());
    return std::vector<char>(value->begin(), value->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> full;
    for (const std::string& k : keys) full.push_back(prefix_ + k);
    check(client_.wait(full, timeout));
  }

 private:
  static void check(const Status& s) {
    if (!s.ok()) throw gloo::IoException(s.to_string());
  }
  StoreClient& client_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

bool is_timeout(const std::string& what) { return what.find("Timed out") != std::string::npos; }

std::vector<int64_t> offsets_of(std::span<const int64_t> bytes) {
  std::vector<int64_t> offsets(bytes.size() + 1, 0);
  for (size_t i = 0; i < bytes.size(); ++i) offsets[i + 1] = offsets[i] + bytes[i];
  return offsets;
}

}  // namespace

StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::create(
    StoreClient& store, int rank, int size, const std::string& hostname,
    std::chrono::milliseconds connect_timeout, const std::string& key_prefix) {
  if (size < 1 || rank < 0 || rank >= size) {
    return invalid_argument_error("gloo: rank " + std::to_string(rank) + " outside [0, " +
                                  std::to_string(size) + ")");
  }
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(connect_timeout);
    NetworkGlooStore gloo_store(store, key_prefix + "/", connect_timeout);
    context->connectFullMesh(gloo_store, device);
    return std::unique_ptr<GlooCommunicator>(new GlooCommunicator(std::move(context), rank, size));
  } catch (const std::exception& e) {
    return unavailable_error("gloo: rank " + std::to_string(rank) + " could not connect to its " +
                             std::to_string(size - 1) + " peers at " + hostname + ": " + e.what());
  }
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<gloo::Context> context, int rank, int size)
    : context_(std::move(context)), rank_(rank), size_(size) {}

GlooCommunicator::~GlooCommunicator() = default;

Status GlooCommunicator::exchange(const std::vector<Transfer>& sends,
                                  const std::vector<Transfer>& recvs, const char* op) {
  if (!broken_.ok()) return broken_;
  const Deadline deadline = deadline_after(timeout());
  const std::string what = std::string(op) + " on rank " + std::to_string(rank_);
  int peer = -1;
  try {
    const uint64_t slot = static_cast<uint64_t>(context_->nextSlot());
    std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> recv_buffers, send_buffers;
    for (const Transfer& t : recvs) {
      peer = t.peer;
      recv_buffers.push_back(context_->createUnboundBuffer(t.data, static_cast<size_t>(t.bytes)));
      recv_buffers.back()->recv(t.peer, slot);
    }
    for (const Transfer& t : sends) {
      peer = t.peer;
      send_buffers.push_back(context_->createUnboundBuffer(t.data, static_cast<size_t>(t.bytes)));
      send_buffers.back()->send(t.peer, slot);
    }
    for (size_t i = 0; i < recvs.size(); ++i) {
      peer = recvs[i].peer;
      recv_buffers[i]->waitRecv(std::max(remaining(deadline), std::chrono::milliseconds(1)));
    }
    for (size_t i = 0; i < sends.size(); ++i) {
      peer = sends[i].peer;
      send_buffers[i]->waitSend(std::max(remaining(deadline), std::chrono::milliseconds(1)));
    }
  } catch (const std::exception& e) {
    const std::string detail = e.what();
    if (is_timeout(detail)) {
      broken_ = deadline_exceeded_error("lost rank " + std::to_string(peer) + ": " + what +
                                        " got nothing from rank " + std::to_string(peer) +
                                        " within " + std::to_string(timeout().count()) +
                                        " ms (rank hung or too slow): " + detail);
    } else {
      broken_ = unavailable_error("lost rank " + std::to_string(peer) + ": " + what +
                                  ": connection to rank " + std::to_string(peer) +
                                  " failed (rank exited?): " + detail);
    }
    log::error("collective failed",
               {{"op", op}, {"rank", rank_}, {"lost_rank", peer}, {"error", broken_.message()}});
    return broken_;
  }
  return ok_status();
}

Status GlooCommunicator::all_to_all_v(const void* send, std::span<const int64_t> send_bytes,
                                      void* recv, std::span<const int64_t> recv_bytes) {
  if (send_bytes.size() != static_cast<size_t>(size_) ||
      recv_bytes.size() != static_cast<size_t>(size_)) {
    return invalid_argument_error("all_to_all_v: counts must have one entry per rank");
  }
  if (send_bytes[rank_] != recv_bytes[rank_]) {
    return invalid_argument_error("all_to_all_v: rank " + std::to_string(rank_) + " sends " +
                                  std::to_string(send_bytes[rank_]) +
                                  " bytes to itself but expects " +
                                  std::to_string(recv_bytes[rank_]));
  }
  const std::vector<int64_t> send_off = offsets_of(send_bytes);
  const std::vector<int64_t> recv_off = offsets_of(recv_bytes);
  char* in = const_cast<char*>(static_cast<const char*>(send));
  char* out = static_cast<char*>(recv);
  std::vector<Transfer> sends, recvs;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (send_bytes[p] > 0) sends.push_back({p, in + send_off[p], send_bytes[p]});
    if (recv_bytes[p] > 0) recvs.push_back({p, out + recv_off[p], recv_bytes[p]});
  }
  if (send_bytes[rank_] > 0) {
    std::memcpy(out + recv_off[rank_], in + send_off[rank_],
                static_cast<size_t>(send_bytes[rank_]));
  }
  return exchange(sends, recvs, "all_to_all_v");
}

Status GlooCommunicator::all_gather(const void* send, int64_t bytes, void* recv) {
  char* in = const_cast<char*>(static_cast<const char*>(send));
  char* out = static_cast<char*>(recv);
  std::vector<Transfer> sends, recvs;
  if (bytes > 0) {
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      sends.push_back({p, in, bytes});
      recvs.push_back({p, out + p * bytes, bytes});
    }
    std::memmove(out + rank_ * bytes, in, static_cast<size_t>(bytes));
  }
  return exchange(sends, recvs, "all_gather");
}

Status GlooCommunicator::all_reduce_sum(float* data, int64_t count) {
  std::vector<float> all(static_cast<size_t>(count * size_));
  MOESERVE_RETURN_IF_ERROR(
      all_gather(data, count * static_cast<int64_t>(sizeof(float)), all.data()));
  for (int64_t i = 0; i < count; ++i) {
    float sum = 0.0f;
    for (int r = 0; r < size_; ++r) sum += all[static_cast<size_t>(r * count + i)];
    data[i] = sum;
  }
  return ok_status();
}

Status GlooCommunicator::broadcast(void* data, int64_t bytes, int root) {
  if (root < 0 || root >= size_) {
    return invalid_argument_error("broadcast: root " + std::to_string(root) + " outside [0, " +
                                  std::to_string(size_) + ")");
  }
  char* p = static_cast<char*>(data);
  std::vector<Transfer> sends, recvs;
  if (bytes > 0 && rank_ == root) {
    for (int r = 0; r < size_; ++r) {
      if (r != root) sends.push_back({r, p, bytes});
    }
  } else if (bytes > 0) {
    recvs.push_back({root, p, bytes});
  }
  return exchange(sends, recvs, "broadcast");
}

Status GlooCommunicator::barrier() {
  const char token = 1;
  std::vector<char> all(static_cast<size_t>(size_));
  return all_gather(&token, 1, all.data());
}

}  // namespace moeserve::parallel
