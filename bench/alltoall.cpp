// bench-alltoall: expert-parallel dispatch + combine over the gloo communicator, and
// the per-step cost of expert parallelism on the tiny model, measured side by side in
// one run (DESIGN.md, Performance method).
//
// 1. DeepSeek-V3 decode shapes: hidden 7168, top-8, 128 tokens per rank, experts drawn
//    uniformly so each assignment goes to a uniformly random rank. One step per rank:
//    exchange the row counts, all-to-all the dispatched rows (FP8: 1 byte per element,
//    as DeepSeek dispatches; or BF16: 2 bytes), then all-to-all the expert outputs back
//    (BF16, as DeepSeek combines). Ranks are threads of this process, each with its own
//    Group (store, rendezvous, gloo TCP mesh on 127.0.0.1), 2 and 4 ranks. Printed per
//    case: ms per step, bytes each rank sends to others per step, network GB/s per rank
//    (those bytes / step time), and the same bytes through a plain memcpy on one thread
//    in the same run (the floor a shared-memory transport could reach).
// 2. Tiny model (generated, BF16), the same 4-prompt batch decoded on a Scheduler by one
//    engine, and by rank 0 of 2 expert-parallel ranks with rank 1 following (the group
//    protocol of `serve` and `generate`): ms per decode step and the difference, i.e.
//    what the collectives add per step (1 thread per rank), and the latency of one
//    small collective, which that overhead is made of.
// Usage: bench-alltoall [--quick]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tools/fixtures/tiny_model.h"
#include "worker/engine/expert_parallel.h"
#include "worker/engine/group_step.h"
#include "worker/engine/scheduler.h"
#include "worker/parallel/group.h"
#include "worker/parallel/socket.h"

namespace {

using moeserve::Status;
using moeserve::parallel::Communicator;
using moeserve::parallel::Group;
using moeserve::parallel::GroupOptions;
using Clock = std::chrono::steady_clock;

constexpr int64_t kHidden = 7168;
constexpr int64_t kTopK = 8;
constexpr int64_t kTokensPerRank = 128;
constexpr int64_t kCombineBytes = 2;  // BF16

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench-alltoall: %s\n", s.to_string().c_str());
    std::exit(1);
  }
}

// A loopback port that was free a moment ago.
uint16_t free_port() {
  auto socket = moeserve::parallel::Socket::listen({"127.0.0.1", 0});
  check(socket.status());
  return socket->local_port();
}

// Runs body(group) on `world` ranks (threads) and returns rank 0's result.
template <class Body>
double on_ranks(int world, Body body) {
  const uint16_t port = free_port();
  std::vector<double> result(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      GroupOptions o;
      o.rank = r;
      o.world_size = world;
      o.leader = "127.0.0.1:" + std::to_string(port);
      auto group = Group::join(o);
      check(group.status());
      result[r] = body(**group);
      check((*group)->comm().barrier());
    });
  }
  for (std::thread& t : threads) t.join();
  return result[0];
}

struct StepResult {
  double seconds_per_step = 0;
  int64_t remote_bytes = 0;  // bytes this rank sends to other ranks per step
  int64_t total_bytes = 0;   // dispatch + combine bytes of this rank, self included
};

// One dispatch + combine step per iteration; returns rank 0's figures.
StepResult dispatch_combine(Group& group, int64_t dispatch_elem_bytes, int iterations) {
  Communicator& comm = group.comm();
  const int world = comm.size();
  std::mt19937 rng(17 + comm.rank());
  std::uniform_int_distribution<int> dest(0, world - 1);
  std::vector<int64_t> rows(world, 0);
  for (int64_t a = 0; a < kTokensPerRank * kTopK; ++a) ++rows[dest(rng)];
  const int64_t row_in = kHidden * dispatch_elem_bytes;
  const int64_t row_out = kHidden * kCombineBytes;
  std::vector<int64_t> send_bytes(world);
  for (int p = 0; p < world; ++p) send_bytes[p] = rows[p] * row_in;
  std::vector<char> send(kTokensPerRank * kTopK * row_in, 3);
  std::vector<char> recv, out, back(kTokensPerRank * kTopK * row_out);
  StepResult r;
  auto step = [&] {
    auto recv_bytes = moeserve::parallel::exchange_counts(comm, send_bytes);
    check(recv_bytes.status());
    int64_t received = 0;
    for (int64_t b : *recv_bytes) received += b;
    recv.resize(received);
    check(comm.all_to_all_v(send.data(), send_bytes, recv.data(), *recv_bytes));
    std::vector<int64_t> back_send(world), back_recv(world);
    for (int p = 0; p < world; ++p) {
      back_send[p] = (*recv_bytes)[p] / row_in * row_out;
      back_recv[p] = rows[p] * row_out;
    }
    out.resize(received / row_in * row_out);
    check(comm.all_to_all_v(out.data(), back_send, back.data(), back_recv));
    r.total_bytes = received + static_cast<int64_t>(back.size());
    r.remote_bytes = 0;
    for (int p = 0; p < world; ++p) {
      if (p != comm.rank()) r.remote_bytes += send_bytes[p] + back_send[p];
    }
  };
  step();  // warm-up: connections, buffer growth
  check(comm.barrier());
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) step();
  r.seconds_per_step = seconds_since(start) / iterations;
  return r;
}

double memcpy_seconds(int64_t bytes, int iterations) {
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::memcpy(b.data(), a.data(), bytes);
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    a[i % bytes] = static_cast<char>(i);
    std::memcpy(b.data(), a.data(), bytes);
  }
  return seconds_since(start) / iterations;
}

void bench_alltoall(bool quick) {
  const int iterations = quick ? 3 : 20;
  std::printf("dispatch+combine, hidden %ld, top-%ld, %ld tokens/rank, combine BF16\n", kHidden,
              kTopK, kTokensPerRank);
  std::printf("%-6s %-9s %10s %14s %12s %14s %10s\n", "ranks", "dispatch", "ms/step",
              "remote MB/rank", "net GB/s", "memcpy GB/s", "net/memcpy");
  for (int world : {2, 4}) {
    for (int64_t elem : {int64_t{1}, int64_t{2}}) {
      StepResult result;
      on_ranks(world, [&](Group& g) {
        StepResult r = dispatch_combine(g, elem, iterations);
        if (g.rank() == 0) result = r;
        return r.seconds_per_step;
      });
      const double copy_s = memcpy_seconds(result.remote_bytes, iterations * 4);
      const double net_gbs = result.remote_bytes / result.seconds_per_step / 1e9;
      const double copy_gbs = result.remote_bytes / copy_s / 1e9;
      std::printf("%-6d %-9s %10.2f %14.2f %12.2f %14.2f %10.3f\n", world,
                  elem == 1 ? "fp8" : "bf16", result.seconds_per_step * 1e3,
                  result.remote_bytes / 1e6, net_gbs, copy_gbs, net_gbs / copy_gbs);
    }
  }
}

// Decode steps of a 4-prompt batch on a Scheduler: one engine, or rank 0 of a group
// (the other ranks follow and return 0).
double ms_per_step(const std::shared_ptr<const moeserve::model::LoadedModel>& model, Group* group,
                   int steps) {
  using namespace moeserve::engine;
  EngineOptions options;
  options.threads = 1;
  options.kv_cache_tokens = 4 * 256;
  auto engine = Engine::create(model, options);
  check(engine.status());
  SchedulerOptions so;
  so.prefix_caching = false;  // every run prefills its prompts again
  std::optional<LeaderStepper> leader;
  if (group != nullptr) {
    auto dispatcher = attach_group_experts(**engine, group->comm(), "");
    check(dispatcher.status());
    if (group->rank() != 0) {
      check(follow_leader(group->comm(), **dispatcher));
      return 0;
    }
    leader.emplace(group->comm());
    install_leader_hooks(*leader, 30000, so);
  }
  Scheduler scheduler(std::move(engine).value(), so);
  scheduler.start();
  // Prefill + `steps` decode steps; time the whole and subtract a prefill-only run.
  auto run = [&](int64_t max_tokens) {
    const auto start = Clock::now();
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < 4; ++i) {
      GenerationRequest r;
      r.prompt = {static_cast<int32_t>(10 + i), 20, 30, static_cast<int32_t>(40 + i)};
      r.max_tokens = max_tokens;
      auto stream = scheduler.submit(std::move(r));
      check(stream.status());
      streams.push_back(*stream);
    }
    for (auto& stream : streams) {
      while (!stream->done()) {
        for (const GenerationEvent& e : stream->next(std::chrono::milliseconds(100))) {
          check(e.error);
        }
      }
    }
    return seconds_since(start);
  };
  run(1);
  const double prefill = run(1);
  const double all = run(steps + 1);
  scheduler.stop();
  check(scheduler.failure());
  if (leader.has_value()) check(leader->stop());
  return (all - prefill) / steps * 1e3;
}

void bench_tiny_steps(bool quick) {
  std::string dir = (std::filesystem::temp_directory_path() / "bench-alltoall-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) check(moeserve::internal_error("mkdtemp failed"));
  check(moeserve::fixtures::write_tiny_model(dir, moeserve::fixtures::TinyModelOptions{}));
  auto loaded = moeserve::model::load_model(
      dir, moeserve::model::BindOptions{.load_mtp = false, .prefault = true});
  std::filesystem::remove_all(dir);  // the mappings stay valid
  check(loaded.status());
  auto model = std::make_shared<const moeserve::model::LoadedModel>(std::move(loaded).value());
  const int steps = quick ? 8 : 64;
  const double one = ms_per_step(model, nullptr, steps);
  const double two = on_ranks(2, [&](Group& g) { return ms_per_step(model, &g, steps); });
  // One small collective (the 8-byte count exchange each MoE layer starts with): an EP
  // decode step runs 1 + 3 per MoE layer of these round trips.
  const int calls = quick ? 20 : 200;
  const double latency_us = on_ranks(2, [&](Group& g) {
    const std::vector<int64_t> counts(2, 8);
    check(moeserve::parallel::exchange_counts(g.comm(), counts).status());
    const auto start = Clock::now();
    for (int i = 0; i < calls; ++i) {
      check(moeserve::parallel::exchange_counts(g.comm(), counts).status());
    }
    return seconds_since(start) / calls * 1e6;
  });
  std::printf("\ntiny model (%ld MoE layers), 4 sequences, %d decode steps, 1 thread per rank\n",
              static_cast<long>(model->config.moe_layers().size()), steps);
  std::printf("1 rank : %8.3f ms/step\n2 ranks: %8.3f ms/step (overhead %+.3f ms/step)\n", one, two,
              two - one);
  std::printf("one 8-byte all-to-all between 2 ranks: %.1f us\n", latency_us);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  bench_alltoall(quick);
  bench_tiny_steps(quick);
  return 0;
}
