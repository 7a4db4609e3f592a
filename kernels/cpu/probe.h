// Measurement kernels for the benchmarks' floors: a memory read that can never be
// compute-bound, and register-only multiply-add loops that show the arithmetic peak of the
// instruction set in use. They do no useful work; the benchmarks time them (bench/floor.h).
// Pure functions of their inputs, thread-safe; each runs on the calling thread with the
// active ISA (isa.h).
#pragma once

#include <cstdint>

namespace moeserve::kernels {

// The 64-bit lane sum of `bytes` bytes at `data` (any alignment; a tail shorter than a vector
// is added byte by byte). Integer vector adds over eight independent accumulators (AVX-512:
// 8 x 64 bytes per iteration, AVX2: 8 x 32), so the loop issues loads as fast as the core
// can and the memory system alone sets its speed.
uint64_t read_sum(const void* data, int64_t bytes);

// Runs `iterations` iterations of independent float32 FMAs held in registers (no memory
// traffic) and returns a value that depends on all of them (so none is optimised away).
// Each iteration performs fma_peak_flops_per_iteration() floating-point operations
// (2 per lane per FMA).
float fma_peak_loop(int64_t iterations, float seed);
int64_t fma_peak_flops_per_iteration();

}  // namespace moeserve::kernels
