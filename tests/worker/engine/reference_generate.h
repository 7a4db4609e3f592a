// The test oracle for generation: one sequence on an Engine, the whole prompt in one
// forward, then one token per forward through the KV cache, each sampled with a
// Sampler (with the prompt and generated tokens as its history), until max_tokens or a stop token
// (included). No batching, no scheduler: the product's one decode loop (engine::Scheduler) is
// checked against it. The sequence's KV blocks are returned to the cache however it ends.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
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

// The reference processing, written out from vLLM's documented semantics: min_tokens
// masks the stop tokens, logit_bias adds by id, repetition over prompt + generated
// (l / r if l > 0 else l * r), frequency and presence over the generated tokens.
inline std::vector<float> reference_processed(std::vector<float> logits, const SamplingParams& p,
                                              const std::vector<int32_t>& prompt,
                                              const std::vector<int32_t>& generated) {
  if (static_cast<int64_t>(generated.size()) < p.min_tokens) {
    for (int32_t t : p.stop_token_ids) logits[t] = -std::numeric_limits<float>::infinity();
  }
  for (const auto& [t, b] : p.logit_bias) logits[t] += b;
  for (int32_t t = 0; t < static_cast<int32_t>(logits.size()); ++t) {
    const auto count = std::count(generated.begin(), generated.end(), t);
    const bool seen = count > 0 || std::count(prompt.begin(), prompt.end(), t) > 0;
    if (seen) {
      const float r = static_cast<float>(p.repetition_penalty);
      logits[t] = logits[t] > 0 ? logits[t] / r : logits[t] * r;
    }
    logits[t] -= static_cast<float>(p.frequency_penalty) * static_cast<float>(count);
    if (count > 0) logits[t] -= static_cast<float>(p.presence_penalty);
  }
  return logits;
}

// Fails the calling test (and returns what it has) when a forward fails.
inline ReferenceResult reference_generate(Engine& engine, const ReferenceRequest& request) {
  ReferenceResult result;
  SequenceKv seq;
  ForwardOutput out;
  Status status = engine.forward({SequenceInput{&seq, request.prompt}}, &out);
  if (status.ok()) result.prompt_logits.assign(out.row(0), out.row(0) + out.vocab_size);
  Sampler sampler(request.sampling);
  std::vector<int32_t> history = request.prompt;  // prompt + generated, for the penalties
  for (int64_t i = 0; status.ok() && i < request.max_tokens; ++i) {
    const SampleResult sample =
        sampler.sample(out.row(0), static_cast<int32_t>(out.vocab_size), {history, i});
    history.push_back(sample.token);
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
