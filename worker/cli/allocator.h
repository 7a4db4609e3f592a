// The heap settings of `moeserve-worker serve`, applied once at start-up before any
// thread allocates.
//
// glibc serves an allocation above its mmap threshold with its own mapping, returned to
// the system on free, and anything below from per-thread arenas that keep freed memory.
// The threshold starts at 128 KiB and rises with every large block freed, up to 32 MiB,
// so after the first large request a 6 MB prompt body (and its parsed copy) lands in a
// handler thread's arena and stays resident after the request: four concurrent 6 MB
// prompts left the worker ~25-50 MiB above its idle size, and malloc_trim(0) does not
// give it back (it does not shrink the top of a non-main arena). Fixing the threshold at
// kServeMmapThresholdBytes keeps large blocks in mappings, so that memory goes back as
// soon as the request is freed (measured with bench-load --scenario memory; numbers in
// docs/serving.md). A GLIBC_TUNABLES that sets the mmap or trim threshold wins.
#pragma once

#include <cstdint>
#include <string_view>

namespace moeserve::cli {

inline constexpr int64_t kServeMmapThresholdBytes = 1 << 20;

// True when `tunables` (the GLIBC_TUNABLES value) sets glibc.malloc.mmap_threshold or
// glibc.malloc.trim_threshold, which the operator of the process chose.
bool tunables_set_malloc_thresholds(std::string_view tunables);

// Applies the threshold (mallopt M_MMAP_THRESHOLD) unless GLIBC_TUNABLES set one; does
// nothing outside glibc. Returns whether it applied it.
bool configure_allocator_for_serving();

}  // namespace moeserve::cli
