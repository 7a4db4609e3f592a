// The test oracle for generation: one sequence on an Engine, the whole prompt in one
// forward, then one token per forward through the KV cache, each sampled with a
// Sampler, until max_tokens or a stop token (included). No batching, no scheduler: the
// product's one decode loop (engine::Scheduler) is checked against it. The sequence's
// KV blocks are returned to the cache however it ends.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"

namespace moeserve::engine::testing {

struct ReferenceRequest {
  std::vector<int32_t> prompt;  // at least one token
  int64_t max_tokens = 16;
  SamplingParams sampling;
};

struct ReferenceResult {
  std::vector<int32_t> tokens;       // the stop token included when hit
  std::vector<float> prompt_logits;  // at the last prompt position
  bool stopped = false;              // ended on a stop token
};

// Fails the calling test (and returns what it has) when a forward fails.
inline ReferenceResult reference_generate(Engine& engine, const ReferenceRequest& request) {
  ReferenceResult result;
  SequenceKv seq;
  ForwardOutput out;
  Status status = engine.forward({SequenceInput{&seq, request.prompt}}, &out);
  if (status.ok()) result.prompt_logits.assign(out.row(0), out.row(0) + out.vocab_size);
  Sampler sampler(request.sampling);
  for (int64_t i = 0; status.ok() && i < request.max_tokens; ++i) {
    const SampleResult sample = sampler.sample(out.row(0), static_cast<int32_t>(out.vocab_size));
    result.tokens.push_back(sample.token);
    result.stopped = sample.stop;
    if (result.stopped || i + 1 == request.max_tokens) break;
    status = engine.forward(
        {SequenceInput{&seq, std::span<const int32_t>(&result.tokens.back(), 1)}}, &out);
  }
  EXPECT_TRUE(status.ok()) << status.to_string();
  engine.kv_cache().release(seq);
  return result;
}

}  // namespace moeserve::engine::testing
