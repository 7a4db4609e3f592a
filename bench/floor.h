// The floors the decode and kernel benchmarks hold the engine to, measured in the same run
// on the same ThreadPool (and so the same threads) as the work they judge:
//   - read bandwidth: kernels::read_sum (integer adds, never compute-bound) over a buffer
//     of kReadBufferBytes with transparent huge pages requested (madvise), split into one
//     contiguous slice per thread; median and best of `passes` timed passes;
//   - the independent probe ../shared/tools/membw.c, when its binary is found
//     ($MOESERVE_MEMBW, else /tmp/membw), run with the same buffer size and THP, so every
//     report can show both and their ratio;
//   - the FMA peak of the active ISA: kernels::fma_peak_loop on every pool thread at once.
// Header-only because each bench/*.cpp is its own executable.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/probe.h"
#include "kernels/cpu/thread_pool.h"

namespace moeserve::bench {

inline constexpr int64_t kReadBufferBytes = int64_t{512} << 20;
inline constexpr int kReadPasses = 11;

struct ReadBandwidth {
  double median_gbs = 0;
  double best_gbs = 0;
};

inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A page-aligned buffer with MADV_HUGEPAGE, first touched by the pool's threads (each its
// own slice, as the timed passes read it).
class HugeBuffer {
 public:
  HugeBuffer(int64_t bytes, kernels::ThreadPool& pool) : bytes_(bytes) {
    constexpr size_t kHugePage = size_t{2} << 20;
    const size_t rounded = (static_cast<size_t>(bytes) + kHugePage - 1) / kHugePage * kHugePage;
    data_ = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, rounded));
    if (data_ == nullptr) {
      std::fprintf(stderr, "bench: cannot allocate %lld bytes\n", static_cast<long long>(bytes));
      std::exit(1);
    }
    madvise(data_, rounded, MADV_HUGEPAGE);
    const int parts = pool.size();
    pool.parallel_for(parts, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t lo = bytes * p / parts, hi = bytes * (p + 1) / parts;
        for (int64_t i = lo; i < hi; ++i) data_[i] = static_cast<uint8_t>(i * 7 + 3);
      }
    });
  }
  ~HugeBuffer() { std::free(data_); }
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  const uint8_t* data() const { return data_; }
  uint8_t* data() { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  int64_t bytes_;
  uint8_t* data_;
};

// One timed read of the whole buffer by the pool, one contiguous slice per thread; GB/s.
inline double read_pass_gbs(const HugeBuffer& buffer, kernels::ThreadPool& pool,
                            std::vector<uint64_t>& sinks) {
  const int parts = pool.size();
  const auto start = std::chrono::steady_clock::now();
  pool.parallel_for(parts, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t lo = buffer.bytes() * p / parts, hi = buffer.bytes() * (p + 1) / parts;
      sinks[static_cast<size_t>(p) * 8] += kernels::read_sum(buffer.data() + lo, hi - lo);
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(buffer.bytes()) / s / 1e9;
}

inline ReadBandwidth measure_read_bandwidth(kernels::ThreadPool& pool,
                                            int64_t bytes = kReadBufferBytes,
                                            int passes = kReadPasses) {
  const HugeBuffer buffer(bytes, pool);
  std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8, 0);
  read_pass_gbs(buffer, pool, sinks);  // warm-up
  std::vector<double> gbs;
  for (int i = 0; i < passes; ++i) gbs.push_back(read_pass_gbs(buffer, pool, sinks));
  if (sinks[0] == 1) std::fprintf(stderr, " ");  // keeps the sums observable
  return {median_of(gbs), *std::max_element(gbs.begin(), gbs.end())};
}

// membw.c's read median and best at `threads` threads (same buffer size, THP), or
// {0, 0} when its binary is not found or its output cannot be read.
inline ReadBandwidth run_membw(int threads, int64_t bytes = kReadBufferBytes,
                               int passes = kReadPasses) {
  const char* env = std::getenv("MOESERVE_MEMBW");
  const std::string path = env != nullptr ? env : "/tmp/membw";
  if (path.empty() || access(path.c_str(), X_OK) != 0) return {};
  const std::string cmd = "MEMBW_THP=1 '" + path + "' " + std::to_string(bytes >> 20) + " " +
                          std::to_string(passes) + " " + std::to_string(threads) + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return {};
  ReadBandwidth result;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    int t = 0;
    double copy_best = 0, copy_median = 0, read_best = 0, read_median = 0;
    if (std::sscanf(line, "%d %lf %lf %lf %lf", &t, &copy_best, &copy_median, &read_best,
                    &read_median) == 5 &&
        t == threads) {
      result = {read_median, read_best};
    }
  }
  pclose(f);
  return result;
}

// The probe and (when found) membw side by side, one line each, for `threads` threads.
inline void print_bandwidth(const char* indent, int threads, const ReadBandwidth& probe,
                            const ReadBandwidth& membw) {
  std::printf("%sread bandwidth, %d thread(s): probe median %.2f GB/s, best %.2f", indent, threads,
              probe.median_gbs, probe.best_gbs);
  if (membw.median_gbs > 0) {
    std::printf("; membw.c median %.2f, best %.2f; probe/membw %.2f\n", membw.median_gbs,
                membw.best_gbs, probe.median_gbs / membw.median_gbs);
  } else {
    std::printf("; membw.c not found (build it to /tmp/membw or set MOESERVE_MEMBW)\n");
  }
}

// GFLOP/s of register-only FMAs of the active ISA with every pool thread running the loop
// at once: best of a few rounds of about 0.1 s.
inline double measure_fma_peak_gflops(kernels::ThreadPool& pool) {
  constexpr int64_t kIterations = int64_t{1} << 21;
  const int parts = pool.size();
  std::vector<float> sinks(static_cast<size_t>(parts) * 16, 0.0f);
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(parts, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        sinks[static_cast<size_t>(p) * 16] += kernels::fma_peak_loop(kIterations, 1.0f);
      }
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double flops = static_cast<double>(kIterations) * parts *
                         static_cast<double>(kernels::fma_peak_flops_per_iteration());
    if (round > 0) best = std::max(best, flops / s / 1e9);
  }
  if (sinks[0] == -1.0f) std::fprintf(stderr, " ");
  return best;
}

}  // namespace moeserve::bench
