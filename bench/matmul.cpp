// bench-matmul: one matmul shape from DRAM against the read floor of the same run, for
// before/after comparisons of a kernel change (build both commits, run both binaries one
// after the other a few times: this host's bandwidth drifts by minutes).
//
// A ring of distinct weight matrices totalling 512 MiB (2 MiB aligned, huge pages
// requested, as the worker's copied weights) is multiplied through one after another, so
// every call reads its weights from DRAM; median of 7 passes over the ring, in GB/s of
// weight bytes, next to bench/floor.h's read probe on the same pool.
// Usage: bench-matmul [--threads N] [--tokens N] [--rows R] [--cols C]
//                     [--type fp8|bf16|f32] [--isa scalar|avx2|avx512|avx512vbmi|avx512bf16]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/floor.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"

namespace {

using moeserve::kernels::Isa;
using moeserve::kernels::WeightType;
using Clock = std::chrono::steady_clock;

constexpr int64_t kRingBytes = int64_t{512} << 20;
constexpr int kPasses = 7;

int usage(const char* why) {
  std::fprintf(
      stderr,
      "bench-matmul: %s\nusage: bench-matmul [--threads N] [--tokens N] [--rows R] "
      "[--cols C] [--type fp8|bf16|f32] [--isa scalar|avx2|avx512|avx512vbmi|avx512bf16]\n",
      why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t threads = 1, tokens = 1, rows = 512, cols = 1024;
  std::string type = "fp8", isa_text = moeserve::kernels::isa_name(moeserve::kernels::active_isa());
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      usage("one matmul shape from DRAM against the read floor");
      return 0;
    }
    if (i + 1 >= argc) return usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    char* end = nullptr;
    const long long number = std::strtoll(value.c_str(), &end, 10);
    const bool numeric = end != value.c_str() && *end == '\0' && number >= 1;
    if (flag == "--type") {
      type = value;
    } else if (flag == "--isa") {
      isa_text = value;
    } else if (!numeric) {
      return usage((flag + " needs an integer >= 1, got \"" + value + "\"").c_str());
    } else if (flag == "--threads") {
      threads = number;
    } else if (flag == "--tokens") {
      tokens = number;
    } else if (flag == "--rows") {
      rows = number;
    } else if (flag == "--cols") {
      cols = number;
    } else {
      return usage(("unknown flag " + flag).c_str());
    }
  }
  WeightType wt;
  int64_t element = 0;
  if (type == "fp8") {
    wt = WeightType::kFP8E4M3, element = 1;
  } else if (type == "bf16") {
    wt = WeightType::kBF16, element = 2;
  } else if (type == "f32") {
    wt = WeightType::kF32, element = 4;
  } else {
    return usage(("--type must be fp8, bf16 or f32, got \"" + type + "\"").c_str());
  }
  const std::optional<Isa> wanted = moeserve::kernels::isa_from_name(isa_text);
  if (!wanted) return usage(("unknown --isa \"" + isa_text + "\"").c_str());
  const Isa active = moeserve::kernels::set_isa_for_testing(*wanted);
  if (active != *wanted) return usage(("this CPU has no " + isa_text).c_str());

  const int64_t matrix_bytes = rows * cols * element;
  const int64_t ring = std::max<int64_t>(1, kRingBytes / matrix_bytes);
  moeserve::kernels::ThreadPool pool(static_cast<int>(threads));
  moeserve::bench::HugeBuffer weights(ring * matrix_bytes, pool);
  // Small codes only (no FP8 NaN, finite BF16): the values do not change the timing.
  for (int64_t i = 0; i < weights.bytes(); ++i) {
    weights.data()[i] = static_cast<uint8_t>((i * 7 + 3) & 0x37);
  }
  std::vector<float> scales((rows + 127) / 128 * ((cols + 127) / 128), 0.01f);
  std::vector<float> x(tokens * cols, 0.5f), y(tokens * rows);
  const auto pass_gbs = [&] {
    const auto start = Clock::now();
    for (int64_t m = 0; m < ring; ++m) {
      const moeserve::kernels::WeightView w{wt, weights.data() + m * matrix_bytes, scales.data(),
                                            rows, cols};
      moeserve::kernels::matmul(w, x.data(), tokens, y.data(), &pool);
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    return static_cast<double>(ring * matrix_bytes) / s / 1e9;
  };
  pass_gbs();  // warm-up
  std::vector<double> gbs;
  for (int p = 0; p < kPasses; ++p) gbs.push_back(pass_gbs());
  const double median = moeserve::bench::median_of(gbs);
  const moeserve::bench::ReadBandwidth floor = moeserve::bench::measure_read_bandwidth(pool);
  std::printf(
      "%s %s %lldx%lld, %lld tokens, %lld threads: %.1f GB/s of weights (median of %d), read "
      "probe median %.1f GB/s, ratio %.2f\n",
      isa_text.c_str(), type.c_str(), static_cast<long long>(rows), static_cast<long long>(cols),
      static_cast<long long>(tokens), static_cast<long long>(threads), median, kPasses,
      floor.median_gbs, median / floor.median_gbs);
  return 0;
}
