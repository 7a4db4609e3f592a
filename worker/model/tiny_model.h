// Generated random models in exactly the Hugging Face layout of the DeepSeek-V2/V3
// checkpoints: config.json (with quantization_config for FP8), the real tensor names
// sharded into model-0000i-of-0000K.safetensors (K >= 2) with
// model.safetensors.index.json, the MTP layer model.layers.<num_hidden_layers>.* for
// V3, tokenizer.json / tokenizer_config.json (worker/model/tiny_tokenizer.h) and
// generation_config.json. Used by tests, benchmarks and the demo.
//
// Weights are normal(0, 1/sqrt(fan_in)) so activations stay O(1); norms are near 1;
// the router is scaled up so routing differs from token to token; the V3 correction
// bias is small and random. FP8 follows DeepSeek-V3: attention and all MLP/expert
// projections are F8_E4M3 with F32 `<name>_scale_inv` = amax/448 per 128x128 block;
// embeddings, lm_head, norms, router, e_score_correction_bias and eh_proj are not
// quantised (BF16, the bias F32). Each tensor's values depend only on the seed and the
// tensor's name (its own splitmix64 stream with polar Box-Muller), so output is identical
// across platforms and standard libraries. Pure apart from writing `dir`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/model/config.h"

namespace moeserve::model {

enum class WeightPrecision { kBf16, kFp8 };

enum class TinyPreset {
  kTiny,     // a few MB: every code path (partial FP8 edge blocks, YaRN for V3, groups)
  kBench1b,  // DeepSeek-V3-shaped, about 1B parameters, for decode benchmarks
};

struct TinyModelOptions {
  Architecture architecture = Architecture::kDeepseekV3;
  WeightPrecision precision = WeightPrecision::kBf16;
  uint64_t seed = 0;
  TinyPreset preset = TinyPreset::kTiny;
};

StatusOr<Architecture> parse_architecture_flag(std::string_view text);  // deepseek_v3|deepseek_v2
StatusOr<WeightPrecision> parse_precision_flag(std::string_view text);  // bf16|fp8
StatusOr<TinyPreset> parse_preset_flag(std::string_view text);          // tiny|bench-1b
std::string_view preset_name(TinyPreset preset);

// The config.json the generator writes for these options.
nlohmann::ordered_json tiny_model_config_json(const TinyModelOptions& options);

struct ParameterCounts {
  int64_t total = 0;             // main model (embeddings, layers, norm, lm_head)
  int64_t active_per_token = 0;  // main model weights one decode step reads: one
                                 // embedding row, attention, dense MLPs, router, the
                                 // top-k routed and the shared experts, lm_head
  int64_t mtp = 0;               // MTP layers, their embed/head copies included
  // Bytes one decode step reads with these weights (FP8: quantised matrices at 1 byte
  // plus their scales, everything else as stored).
  int64_t active_bytes_bf16 = 0;
  int64_t active_bytes_fp8 = 0;
};

// Parameter counts of a config, from the same tensor list the generator writes.
ParameterCounts count_parameters(const ModelConfig& config);

// Writes the model into `dir` (created if missing; existing files are overwritten).
Status write_tiny_model(const std::string& dir, const TinyModelOptions& options);

}  // namespace moeserve::model
