// NcclCommunicator against the gloo communicator of the same group: one rank per GPU
// (threads of this process), the same collectives on the same inputs must give the
// same bytes. Skipped without a GPU (CTest label `gpu`).
#include "worker/parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"
#include "worker/parallel/group.h"

namespace moeserve::parallel {
namespace {

using std::chrono::milliseconds;

int devices() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

template <class T>
std::vector<T> to_host(const T* device, size_t n) {
  std::vector<T> host(n);
  cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

template <class T>
T* to_device(const std::vector<T>& host) {
  T* device = nullptr;
  cudaMalloc(&device, std::max<size_t>(1, host.size()) * sizeof(T));
  cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return device;
}

void check_rank(Group& group, int rank, int world) {
  auto nccl = NcclCommunicator::create(group.store(), rank, world, rank, milliseconds(30000));
  ASSERT_TRUE(nccl.ok()) << nccl.status().to_string();
  Communicator& gloo = group.comm();

  // all_to_all_v: rank r sends 1000 * (r + p + 1) bytes to p.
  std::vector<int64_t> send_bytes(world), recv_bytes(world);
  std::vector<char> send;
  for (int p = 0; p < world; ++p) {
    send_bytes[p] = 1000 * (rank + p + 1);
    recv_bytes[p] = 1000 * (p + rank + 1);
    for (int64_t i = 0; i < send_bytes[p]; ++i)
      send.push_back(static_cast<char>(rank * 31 + p + i));
  }
  const int64_t total = std::accumulate(recv_bytes.begin(), recv_bytes.end(), int64_t{0});
  std::vector<char> want(total);
  ASSERT_TRUE(gloo.all_to_all_v(send.data(), send_bytes, want.data(), recv_bytes).ok());
  char* d_send = to_device(send);
  char* d_recv = to_device(std::vector<char>(total));
  ASSERT_TRUE((*nccl)->all_to_all_v(d_send, send_bytes, d_recv, recv_bytes).ok());
  EXPECT_EQ(to_host(d_recv, total), want);

  // all_reduce_sum on non-zero floats.
  std::vector<float> values(257);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * (rank + 1) + 0.001f * i;
  std::vector<float> sum = values;
  ASSERT_TRUE(gloo.all_reduce_sum(sum.data(), static_cast<int64_t>(sum.size())).ok());
  float* d_values = to_device(values);
  ASSERT_TRUE((*nccl)->all_reduce_sum(d_values, static_cast<int64_t>(values.size())).ok());
  const std::vector<float> got = to_host(d_values, values.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], sum[i], 1e-5f * world);

  // all_gather, broadcast, barrier.
  std::vector<char> mine(64, static_cast<char>(rank + 1)), gathered(64 * world);
  ASSERT_TRUE(gloo.all_gather(mine.data(), 64, gathered.data()).ok());
  char* d_mine = to_device(mine);
  char* d_all = to_device(std::vector<char>(64 * world));
  ASSERT_TRUE((*nccl)->all_gather(d_mine, 64, d_all).ok());
  EXPECT_EQ(to_host(d_all, 64 * world), gathered);
  ASSERT_TRUE((*nccl)->broadcast(d_mine, 64, world - 1).ok());
  EXPECT_EQ(to_host(d_mine, 64), std::vector<char>(64, static_cast<char>(world)));
  EXPECT_TRUE((*nccl)->barrier().ok());
  for (void* p :
       {static_cast<void*>(d_send), static_cast<void*>(d_recv), static_cast<void*>(d_values),
        static_cast<void*>(d_mine), static_cast<void*>(d_all)}) {
    cudaFree(p);
  }
}

TEST(NcclCommunicator, MatchesGlooOnEveryCollective) {
  const int world = std::min(devices(), 4);
  if (world == 0) GTEST_SKIP() << "no CUDA device";
  const uint16_t port = testing::free_port();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([=] {
      GroupOptions o;
      o.rank = rank;
      o.world_size = world;
      o.leader = "127.0.0.1:" + std::to_string(port);
      auto group = Group::join(o);
      ASSERT_TRUE(group.ok()) << group.status().to_string();
      ASSERT_EQ(cudaSetDevice(rank), cudaSuccess);
      check_rank(**group, rank, world);
      ASSERT_TRUE((*group)->comm().barrier().ok());
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace
}  // namespace moeserve::parallel
