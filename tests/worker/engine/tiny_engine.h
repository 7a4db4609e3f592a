// Test helpers: a generated tiny model loaded into an Engine, and a forward pass that
// returns the logits of every new token.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/engine.h"
#include "worker/model/weights.h"

namespace moeserve::engine::testing {

inline std::shared_ptr<const model::LoadedModel> make_tiny_model(
    const std::string& dir, const fixtures::TinyModelOptions& options, bool load_mtp = false) {
  const Status written = fixtures::write_tiny_model(dir, options);
  EXPECT_TRUE(written.ok()) << written.to_string();
  auto loaded = model::load_model(dir, model::BindOptions{.load_mtp = load_mtp, .prefault = false});
  EXPECT_TRUE(loaded.ok()) << loaded.status().to_string();
  if (!loaded.ok()) return nullptr;
  return std::make_shared<const model::LoadedModel>(std::move(loaded).value());
}

inline std::shared_ptr<const model::LoadedModel> make_tiny_model(const std::string& dir,
                                                                 model::Architecture arch,
                                                                 model::WeightPrecision precision,
                                                                 uint64_t seed) {
  return make_tiny_model(dir, {.architecture = arch, .precision = precision, .seed = seed});
}

inline std::unique_ptr<Engine> make_engine(std::shared_ptr<const model::LoadedModel> model,
                                           EngineOptions options = {}) {
  if (options.threads <= 0) options.threads = 2;
  auto engine = Engine::create(std::move(model), options);
  EXPECT_TRUE(engine.ok()) << engine.status().to_string();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

// Runs `tokens` of one sequence and returns [tokens.size(), vocab] logits.
inline std::vector<float> forward_all(Engine& engine, SequenceKv& seq,
                                      const std::vector<int32_t>& tokens,
                                      ForwardOutput* output = nullptr) {
  ForwardOutput local;
  ForwardOutput& out = output != nullptr ? *output : local;
  const Status status = engine.forward({SequenceInput{&seq, tokens, true}}, &out);
  EXPECT_TRUE(status.ok()) << status.to_string();
  return out.logits;
}

// Names the instances of a test suite parameterised by weight precision.
inline std::string precision_name(const ::testing::TestParamInfo<model::WeightPrecision>& info) {
  return info.param == model::WeightPrecision::kBf16 ? "Bf16" : "Fp8";
}

inline std::vector<int32_t> test_prompt(int n, int32_t vocab, int32_t salt = 0) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + 11 + salt * 101) % vocab);
  return ids;
}

}  // namespace moeserve::engine::testing
