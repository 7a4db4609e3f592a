#include "worker/cli/allocator.h"

#include <gtest/gtest.h>

namespace moeserve::cli {
namespace {

TEST(Allocator, TunablesThatSetAMallocThresholdWin) {
  EXPECT_TRUE(tunables_set_malloc_thresholds("glibc.malloc.mmap_threshold=4194304"));
  EXPECT_TRUE(
      tunables_set_malloc_thresholds("glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=0"));
  EXPECT_FALSE(tunables_set_malloc_thresholds("glibc.malloc.arena_max=2"));
  EXPECT_FALSE(tunables_set_malloc_thresholds(""));
}

}  // namespace
}  // namespace moeserve::cli
