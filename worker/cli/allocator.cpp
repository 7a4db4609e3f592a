#include "worker/cli/allocator.h"

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace moeserve::cli {

bool tunables_set_malloc_thresholds(std::string_view tunables) {
  return tunables.find("glibc.malloc.mmap_threshold") != std::string_view::npos ||
         tunables.find("glibc.malloc.trim_threshold") != std::string_view::npos;
}

bool configure_allocator_for_serving() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && tunables_set_malloc_thresholds(tunables)) return false;
  return ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(kServeMmapThresholdBytes)) == 1;
#else
  return false;
#endif
}

}  // namespace moeserve::cli
