#include "kernels/cpu/probe.h"

#include <cstring>

#include "kernels/cpu/isa.h"

#if MOESERVE_X86_SIMD
#include <immintrin.h>
#endif

namespace moeserve::kernels {
namespace {

// Accumulators of the FMA loop: enough to cover the FMA latency (4 cycles) times the FMA
// ports (2 on Zen 4/5 and recent Intel cores) with room to spare.
constexpr int kFmaChains = 12;
constexpr int kFmaPerIteration = 4;  // unrolled FMAs per chain per iteration

uint64_t read_sum_scalar(const uint8_t* p, int64_t bytes) {
  uint64_t acc[8] = {};
  int64_t i = 0;
  for (; i + 64 <= bytes; i += 64) {
    for (int j = 0; j < 8; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      acc[j] += v;
    }
  }
  uint64_t sum = 0;
  for (uint64_t a : acc) sum += a;
  for (; i < bytes; ++i) sum += p[i];
  return sum;
}

float fma_peak_scalar(int64_t iterations, float seed) {
  float acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = seed + static_cast<float>(j);
  const float a = 0.999f, b = 1e-3f;
  for (int64_t i = 0; i < iterations; ++i) {
    for (int k = 0; k < kFmaPerIteration; ++k) {
      for (int j = 0; j < kFmaChains; ++j) acc[j] = acc[j] * a + b;
    }
  }
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

#if MOESERVE_X86_SIMD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

uint64_t read_sum_avx512(const uint8_t* p, int64_t bytes) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 512 <= bytes; i += 512) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      acc[j] = _mm512_add_epi64(acc[j], _mm512_loadu_si512(p + i + 64 * j));
    }
  }
  __m512i s = acc[0];
  for (int j = 1; j < 8; ++j) s = _mm512_add_epi64(s, acc[j]);
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(s)) + read_sum_scalar(p + i, bytes - i);
}

float fma_peak_avx512(int64_t iterations, float seed) {
  __m512 acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_set1_ps(seed + static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 4
    for (int k = 0; k < kFmaPerIteration; ++k) {
#pragma GCC unroll 12
      for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
  }
  __m512 s = acc[0];
  for (int j = 1; j < kFmaChains; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

uint64_t read_sum_avx2(const uint8_t* p, int64_t bytes) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      acc[j] = _mm256_add_epi64(
          acc[j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32 * j)));
    }
  }
  __m256i s = acc[0];
  for (int j = 1; j < 8; ++j) s = _mm256_add_epi64(s, acc[j]);
  uint64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + read_sum_scalar(p + i, bytes - i);
}

float fma_peak_avx2(int64_t iterations, float seed) {
  __m256 acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm256_set1_ps(seed + static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 4
    for (int k = 0; k < kFmaPerIteration; ++k) {
#pragma GCC unroll 12
      for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    }
  }
  __m256 s = acc[0];
  for (int j = 1; j < kFmaChains; ++j) s = _mm256_add_ps(s, acc[j]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  float sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

#pragma GCC pop_options
#endif  // MOESERVE_X86_SIMD

int64_t lanes_of(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
    case Isa::kAvx512Vbmi:
    case Isa::kAvx512Bf16: return 16;
    case Isa::kAvx2: return 8;
    case Isa::kScalar: return 1;
  }
  return 1;
}

}  // namespace

uint64_t read_sum(const void* data, int64_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (bytes <= 0) return 0;
#if MOESERVE_X86_SIMD
  if (active_isa() >= Isa::kAvx512) return read_sum_avx512(p, bytes);
  if (active_isa() == Isa::kAvx2) return read_sum_avx2(p, bytes);
#endif
  return read_sum_scalar(p, bytes);
}

float fma_peak_loop(int64_t iterations, float seed) {
#if MOESERVE_X86_SIMD
  if (active_isa() >= Isa::kAvx512) return fma_peak_avx512(iterations, seed);
  if (active_isa() == Isa::kAvx2) return fma_peak_avx2(iterations, seed);
#endif
  return fma_peak_scalar(iterations, seed);
}

int64_t fma_peak_flops_per_iteration() {
  return 2 * kFmaChains * kFmaPerIteration * lanes_of(active_isa());
}

}  // namespace moeserve::kernels
