// A small CPU-sized group for simulator tests: a few requests per second fill it, so a
// trace of hours runs in a fraction of a second. $10 per group-hour.
#pragma once

#include "bench/sim/capacity.h"

namespace moeserve::sim::testing {

inline Capacity small_capacity() {
  Capacity c;
  c.usd_per_group_hour = 10;
  c.kv_tokens = 200000;
  c.max_batch = 32;
  c.max_prefill_tokens = 8192;
  c.prefill_tokens_per_s.points = {{512, 4000}, {8192, 8000}};
  c.decode_tokens_per_s.points = {{1, 30}, {32, 600}};
  return c;
}

}  // namespace moeserve::sim::testing
