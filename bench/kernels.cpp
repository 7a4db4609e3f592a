// bench-kernels: memory bandwidth and matmul throughput of the CPU kernels, measured side
// by side in one run (DESIGN.md, Performance method).
//
// 1. Read bandwidth (bench/floor.h: integer-add probe over 512 MiB with huge pages, median
//    and best, membw.c beside it when found) and the FMA peak with 1 and 2 threads.
//    Single-token decode is bound by reading weights, so the read median is the floor
//    matmul is held to.
// 2. matmul on DeepSeek-V3 MoE expert shapes (2048x7168 gate/up, 7168x2048 down) for F32,
//    BF16 and FP8 weights at 1, 4 and 16 tokens on 1 and 2 threads. Each call uses the next
//    of a ring of distinct weight matrices totalling 512 MiB, more than the last-level cache
//    holds, so weights come from DRAM as they do in a real model.
// Prints, per case: time per call, weight GB/s (weight bytes / time), the ratio of that to
// the read bandwidth at the same thread count, and aggregate speed-up over 1 token.
// 3. FP8 2048x7168 on one thread with each instruction set the CPU supports, and the
//    round-trip cost of an empty ThreadPool::parallel_for (paid by every matmul).
// Usage: bench-kernels [--quick]   (--quick: shorter timing windows, for smoke runs)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench/floor.h"
#include "kernels/cpu/kernels.h"

namespace {

using moeserve::kernels::Isa;
using moeserve::kernels::ThreadPool;
using moeserve::kernels::WeightType;
using moeserve::kernels::WeightView;
using Clock = std::chrono::steady_clock;

constexpr int64_t kWeightRingBytes = int64_t{512} << 20;
constexpr int64_t kExpertRows = 2048;
constexpr int64_t kHidden = 7168;
constexpr int64_t kResidentRows = 256;
constexpr int64_t kResidentCols = 1024;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Calls fn() until `window_s` has passed (at least `min_calls` times); seconds per call.
template <class Fn>
double time_per_call(Fn&& fn, double window_s, int min_calls) {
  fn();  // warm-up: page faults, thread wake-up
  const auto start = Clock::now();
  int calls = 0;
  while (calls < min_calls || seconds_since(start) < window_s) {
    fn();
    ++calls;
  }
  return seconds_since(start) / calls;
}

// Seconds of CPU time of the calling thread per call of fn() (at least `calls` calls and
// `window_s` of CPU time): time the thread spent descheduled on a shared machine does not
// count, so single-thread instruction costs compare fairly under load.
template <class Fn>
double cpu_time_per_call(Fn&& fn, double window_s, int calls) {
  const auto now = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  fn();
  const double start = now();
  int done = 0;
  while (done < calls || now() - start < window_s) {
    fn();
    ++done;
  }
  return (now() - start) / done;
}

uint64_t xorshift(uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

// A ring of identical-content weight matrices (content does not matter for bandwidth; it is
// random and finite so the arithmetic is ordinary).
struct WeightRing {
  WeightType type;
  std::vector<std::vector<uint8_t>> data;
  std::vector<float> scales;  // shared by all; same block count for both orientations

  // `copies` 0: enough copies to total kWeightRingBytes (at least 2).
  WeightRing(WeightType t, int64_t elements, int64_t copies = 0) : type(t) {
    const int64_t element_bytes = t == WeightType::kF32 ? 4 : t == WeightType::kBF16 ? 2 : 1;
    const int64_t bytes = elements * element_bytes;
    const int64_t count =
        copies > 0 ? copies : std::max<int64_t>(2, (kWeightRingBytes + bytes - 1) / bytes);
    std::vector<uint8_t> first(static_cast<size_t>(bytes));
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < elements; ++i) {
      const float v =
          static_cast<float>(static_cast<int64_t>(xorshift(state) % 2001) - 1000) / 1000;
      if (t == WeightType::kF32) {
        std::memcpy(first.data() + 4 * i, &v, 4);
      } else if (t == WeightType::kBF16) {
        const uint16_t b = moeserve::kernels::f32_to_bf16(v);
        std::memcpy(first.data() + 2 * i, &b, 2);
      } else {
        first[static_cast<size_t>(i)] = moeserve::kernels::f32_to_fp8_e4m3(v * 448);
      }
    }
    // Each copy starts on a 64-byte boundary, as the loader places tensors (weights.h).
    for (int64_t i = 0; i < count; ++i) {
      data.emplace_back(first.size() + 64);
      std::memcpy(aligned(data.back()), first.data(), first.size());
    }
    scales.assign(static_cast<size_t>(((kExpertRows + 127) / 128) * ((kHidden + 127) / 128)),
                  1.0f / 448);
  }

  static uint8_t* aligned(std::vector<uint8_t>& v) {
    const auto address = reinterpret_cast<uintptr_t>(v.data());
    return v.data() + ((64 - address % 64) % 64);
  }
  static const uint8_t* aligned(const std::vector<uint8_t>& v) {
    return aligned(const_cast<std::vector<uint8_t>&>(v));
  }

  WeightView view(int64_t index, int64_t rows, int64_t cols) const {
    return {type, aligned(data[static_cast<size_t>(index % static_cast<int64_t>(data.size()))]),
            scales.data(), rows, cols};
  }
};

const char* type_name(WeightType t) {
  return t == WeightType::kF32 ? "f32" : t == WeightType::kBF16 ? "bf16" : "fp8";
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const double window_s = quick ? 0.05 : 0.25;
  const std::vector<int> thread_counts = {1, 2};
  const std::vector<int64_t> token_counts = {1, 4, 16};

  std::printf("bench-kernels: isa %s, %u hardware threads\n",
              moeserve::kernels::isa_name(moeserve::kernels::active_isa()),
              std::thread::hardware_concurrency());
  std::vector<double> read_gbs(thread_counts.size());
  std::printf("\n");
  for (size_t i = 0; i < thread_counts.size(); ++i) {
    std::fprintf(stderr, "[bench-kernels] bandwidth, %d thread(s)...\n", thread_counts[i]);
    ThreadPool pool(thread_counts[i]);
    const moeserve::bench::ReadBandwidth bw = moeserve::bench::measure_read_bandwidth(
        pool, moeserve::bench::kReadBufferBytes, quick ? 3 : moeserve::bench::kReadPasses);
    read_gbs[i] = bw.median_gbs;
    moeserve::bench::print_bandwidth(
        "", thread_counts[i], bw,
        quick ? moeserve::bench::ReadBandwidth{} : moeserve::bench::run_membw(thread_counts[i]));
    std::printf("FMA peak (%s, %d thread(s)): %.1f GFLOP/s\n",
                moeserve::kernels::isa_name(moeserve::kernels::active_isa()), thread_counts[i],
                moeserve::bench::measure_fma_peak_gflops(pool));
  }

  std::printf("\n%-5s %-10s %6s %7s %10s %12s %12s %14s\n", "type", "shape", "tokens", "threads",
              "ms/call", "weight GB/s", "of read bw", "vs 1 token");
  const int64_t elements = kExpertRows * kHidden;
  for (WeightType type : {WeightType::kFP8E4M3, WeightType::kBF16, WeightType::kF32}) {
    std::fprintf(stderr, "[bench-kernels] preparing %s weights...\n", type_name(type));
    const WeightRing ring(type, elements);
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{kExpertRows, kHidden},
                              std::pair<int64_t, int64_t>{kHidden, kExpertRows}}) {
      const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
      for (size_t ti = 0; ti < thread_counts.size(); ++ti) {
        ThreadPool pool(thread_counts[ti]);
        double single_token_s = 0;
        for (int64_t tokens : token_counts) {
          std::fprintf(stderr, "[bench-kernels] %s %s tokens %ld threads %d\n", type_name(type),
                       shape.c_str(), static_cast<long>(tokens), thread_counts[ti]);
          std::vector<float> x(static_cast<size_t>(tokens * cols));
          uint64_t state = 12345;
          for (auto& v : x) v = static_cast<float>(xorshift(state) % 1000) / 1000 - 0.5f;
          std::vector<float> y(static_cast<size_t>(tokens * rows));
          int64_t next = 0;
          const double s = time_per_call(
              [&] {
                moeserve::kernels::matmul(ring.view(next++, rows, cols), x.data(), tokens, y.data(),
                                          &pool);
              },
              window_s, static_cast<int>(ring.data.size()));
          if (tokens == 1) single_token_s = s;
          const double bytes =
              static_cast<double>(moeserve::kernels::weight_bytes(ring.view(0, rows, cols)));
          const double gbs = bytes / s / 1e9;
          const double speedup = single_token_s * tokens / s;
          std::printf("%-5s %-10s %6ld %7d %10.3f %12.1f %11.0f%% %13.1fx\n", type_name(type),
                      shape.c_str(), static_cast<long>(tokens), thread_counts[ti], s * 1e3, gbs,
                      100 * gbs / read_gbs[ti], speedup);
          std::fflush(stdout);
        }
      }
    }
  }

  std::printf("\n%-7s %6s %10s %12s %12s\n", "isa", "tokens", "ms/call", "weight GB/s",
              "of read bw");
  {
    const WeightRing ring(WeightType::kFP8E4M3, elements);
    ThreadPool single(1);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vbmi, Isa::kAvx512Bf16}) {
      if (moeserve::kernels::set_isa_for_testing(isa) != isa) continue;
      for (int64_t tokens : {1, 16}) {
        if (isa == Isa::kScalar && tokens > 1) continue;  // seconds per call; adds nothing
        std::fprintf(stderr, "[bench-kernels] fp8 isa %s tokens %ld\n",
                     moeserve::kernels::isa_name(isa), static_cast<long>(tokens));
        std::vector<float> x(static_cast<size_t>(tokens * kHidden), 0.25f);
        std::vector<float> y(static_cast<size_t>(tokens * kExpertRows));
        int64_t next = 0;
        const double s = time_per_call(
            [&] {
              moeserve::kernels::matmul(ring.view(next++, kExpertRows, kHidden), x.data(), tokens,
                                        y.data(), &single);
            },
            window_s, 3);
        const double gbs = static_cast<double>(elements) / s / 1e9;
        std::printf("%-7s %6ld %10.3f %12.1f %11.0f%%\n", moeserve::kernels::isa_name(isa),
                    static_cast<long>(tokens), s * 1e3, gbs, 100 * gbs / read_gbs[0]);
        std::fflush(stdout);
      }
    }
    moeserve::kernels::set_isa_for_testing(moeserve::kernels::detected_isa());
  }

  // Cache-resident: one small matrix (fits L2) multiplied over and over on one thread, so
  // memory is not the limit and the rate shows the kernel's instruction cost (timed in thread
  // CPU time). ISAs are
  // interleaved round by round and each reports its median; the ratio is against avx512.
  std::printf("\ncache-resident matmul, 1 thread, %dx%d, median of interleaved rounds\n",
              static_cast<int>(kResidentRows), static_cast<int>(kResidentCols));
  std::printf("%-5s %6s %-11s %12s %12s\n", "type", "tokens", "isa", "weight GB/s", "vs avx512");
  for (WeightType type : {WeightType::kFP8E4M3, WeightType::kBF16}) {
    const WeightRing ring(type, kResidentRows * kResidentCols, 1);
    for (int64_t tokens : {1, 4, 16}) {
      std::vector<float> x(static_cast<size_t>(tokens * kResidentCols), 0.25f);
      std::vector<float> y(static_cast<size_t>(tokens * kResidentRows));
      std::vector<Isa> isas;
      for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vbmi, Isa::kAvx512Bf16}) {
        if (moeserve::kernels::set_isa_for_testing(isa) == isa) isas.push_back(isa);
      }
      std::vector<std::vector<double>> rates(isas.size());
      const WeightView view = ring.view(0, kResidentRows, kResidentCols);
      for (int round = 0; round < (quick ? 3 : 11); ++round) {
        for (size_t i = 0; i < isas.size(); ++i) {
          moeserve::kernels::set_isa_for_testing(isas[i]);
          const double s = cpu_time_per_call(
              [&] { moeserve::kernels::matmul(view, x.data(), tokens, y.data(), nullptr); },
              window_s / 5, 20);
          rates[i].push_back(static_cast<double>(moeserve::kernels::weight_bytes(view)) / s / 1e9);
        }
      }
      double base = 0;
      for (size_t i = 0; i < isas.size(); ++i) {
        if (isas[i] == Isa::kAvx512) base = moeserve::bench::median_of(rates[i]);
      }
      for (size_t i = 0; i < isas.size(); ++i) {
        const double median = moeserve::bench::median_of(rates[i]);
        std::printf("%-5s %6ld %-11s %12.1f %11.2fx\n", type_name(type), static_cast<long>(tokens),
                    moeserve::kernels::isa_name(isas[i]), median, base > 0 ? median / base : 0);
      }
      std::fflush(stdout);
    }
  }
  moeserve::kernels::set_isa_for_testing(moeserve::kernels::detected_isa());

  ThreadPool pair(2);
  const double dispatch_s =
      time_per_call([&] { pair.parallel_for(2, [](int64_t, int64_t) {}); }, window_s, 100);
  std::printf("\nThreadPool(2) empty parallel_for round trip: %.2f us\n", dispatch_s * 1e6);
  return 0;
}
