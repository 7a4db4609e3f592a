#include "worker/parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"

namespace moeserve::parallel {

struct NcclCommunicator::State {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  float* scratch = nullptr;  // one float for barrier()
};

namespace {

std::string nccl_text(ncclResult_t r) { return ncclGetErrorString(r); }

// Polls the communicator's asynchronous state until it leaves ncclInProgress.
ncclResult_t wait_comm(ncclComm_t comm, Deadline deadline) {
  ncclResult_t state = ncclInProgress;
  while (true) {
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) return ncclInternalError;
    if (state != ncclInProgress || remaining(deadline).count() <= 0) return state;
    std::this_thread::yield();
  }
}

}  // namespace

StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(
    StoreClient& store, int rank, int size, int device, std::chrono::milliseconds connect_timeout,
    const std::string& key_prefix) {
  const Deadline deadline = deadline_after(connect_timeout);
  if (cudaSetDevice(device) != cudaSuccess) {
    return unavailable_error("nccl: cannot use CUDA device " + std::to_string(device));
  }
  ncclUniqueId id;
  const std::string key = key_prefix + "/id";
  if (rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return unavailable_error("nccl: ncclGetUniqueId: " + nccl_text(r));
    }
    MOESERVE_RETURN_IF_ERROR(store.set(
        key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)), connect_timeout));
  } else {
    MOESERVE_ASSIGN_OR_RETURN(std::string bytes, store.get(key, connect_timeout));
    if (bytes.size() != sizeof(id)) return internal_error("nccl: malformed unique id in the store");
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  auto state = std::make_unique<State>();
  state->device = device;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&state->comm, size, id, rank, &config);
  if (r == ncclInProgress) r = wait_comm(state->comm, deadline);
  if (r != ncclSuccess) {
    if (state->comm != nullptr) ncclCommAbort(state->comm);
    if (r == ncclInProgress) {
      return deadline_exceeded_error("nccl: rank " + std::to_string(rank) + " of " +
                                     std::to_string(size) + " did not connect within " +
                                     std::to_string(connect_timeout.count()) + " ms");
    }
    return unavailable_error("nccl: ncclCommInitRankConfig: " + nccl_text(r));
  }
  if (cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc(&state->scratch, sizeof(float)) != cudaSuccess) {
    ncclCommAbort(state->comm);
    return resource_exhausted_error("nccl: cannot create the stream or scratch buffer");
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(state), rank, size));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<State> state, int rank, int size)
    : state_(std::move(state)), rank_(rank), size_(size) {}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(state_->device);
  if (broken_.ok()) {
    ncclCommDestroy(state_->comm);
  } else {
    ncclCommAbort(state_->comm);
  }
  cudaFree(state_->scratch);
  cudaStreamDestroy(state_->stream);
}

Status NcclCommunicator::finish(int launched, const char* op) {
  const Deadline deadline = deadline_after(timeout());
  const std::string what = std::string(op) + " on rank " + std::to_string(rank_);
  ncclResult_t r = static_cast<ncclResult_t>(launched);
  if (r == ncclInProgress) r = wait_comm(state_->comm, deadline);
  while (r == ncclSuccess) {
    const cudaError_t e = cudaStreamQuery(state_->stream);
    if (e == cudaSuccess) return ok_status();
    if (e != cudaErrorNotReady) {
      broken_ = internal_error("nccl: " + what + ": CUDA: " + cudaGetErrorString(e));
      return broken_;
    }
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &async);
    if (async != ncclSuccess) {
      r = async;
      break;
    }
    if (remaining(deadline).count() <= 0) {
      r = ncclInProgress;
      break;
    }
    std::this_thread::yield();
  }
  if (r == ncclInProgress) {
    broken_ = deadline_exceeded_error("nccl: " + what + " did not finish within " +
                                      std::to_string(timeout().count()) +
                                      " ms: a peer rank hung or was lost (NCCL cannot say which)");
  } else {
    broken_ = unavailable_error("nccl: " + what + " failed: " + nccl_text(r) +
                                " (a peer rank was lost?)");
  }
  ncclCommAbort(state_->comm);
  log::error("collective failed", {{"op", op}, {"rank", rank_}, {"error", broken_.message()}});
  return broken_;
}

Status NcclCommunicator::all_to_all_v(const void* send, std::span<const int64_t> send_bytes,
                                      void* recv, std::span<const int64_t> recv_bytes) {
  if (!broken_.ok()) return broken_;
  if (send_bytes.size() != static_cast<size_t>(size_) ||
      recv_bytes.size() != static_cast<size_t>(size_) || send_bytes[rank_] != recv_bytes[rank_]) {
    return invalid_argument_error(
        "nccl all_to_all_v: counts must have one entry per rank and "
        "match for this rank");
  }
  cudaSetDevice(state_->device);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  int64_t send_off = 0, recv_off = 0;
  std::vector<int64_t> send_at(size_), recv_at(size_);
  for (int p = 0; p < size_; ++p) {
    send_at[p] = send_off;
    recv_at[p] = recv_off;
    send_off += send_bytes[p];
    recv_off += recv_bytes[p];
  }
  if (send_bytes[rank_] > 0) {
    cudaMemcpyAsync(out + recv_at[rank_], in + send_at[rank_],
                    static_cast<size_t>(send_bytes[rank_]), cudaMemcpyDeviceToDevice,
                    state_->stream);
  }
  ncclGroupStart();
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (send_bytes[p] > 0) {
      ncclSend(in + send_at[p], static_cast<size_t>(send_bytes[p]), ncclUint8, p, state_->comm,
               state_->stream);
    }
    if (recv_bytes[p] > 0) {
      ncclRecv(out + recv_at[p], static_cast<size_t>(recv_bytes[p]), ncclUint8, p, state_->comm,
               state_->stream);
    }
  }
  return finish(ncclGroupEnd(), "all_to_all_v");
}

Status NcclCommunicator::all_reduce_sum(float* data, int64_t count) {
  if (!broken_.ok()) return broken_;
  cudaSetDevice(state_->device);
  return finish(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum,
                              state_->comm, state_->stream),
                "all_reduce_sum");
}

Status NcclCommunicator::all_gather(const void* send, int64_t bytes, void* recv) {
  if (!broken_.ok()) return broken_;
  cudaSetDevice(state_->device);
  return finish(ncclAllGather(send, recv, static_cast<size_t>(bytes), ncclUint8, state_->comm,
                              state_->stream),
                "all_gather");
}

Status NcclCommunicator::broadcast(void* data, int64_t bytes, int root) {
  if (!broken_.ok()) return broken_;
  if (root < 0 || root >= size_) return invalid_argument_error("nccl broadcast: bad root");
  cudaSetDevice(state_->device);
  return finish(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, state_->comm,
                              state_->stream),
                "broadcast");
}

Status NcclCommunicator::barrier() { return all_reduce_sum(state_->scratch, 1); }

}  // namespace moeserve::parallel
