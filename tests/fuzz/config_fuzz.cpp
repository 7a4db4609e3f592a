// config.json (worker/model/config.h): parse_config on any bytes. An accepted config
// satisfies what the engine relies on (the checks of the header), its derived sizes
// (qk_head_dim, shared_intermediate_size, moe_layers) compute without overflow
// (UBSan), and no top-level integer was wrapped from an unsigned value out of range.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_check.h"
#include "worker/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  moeserve::StatusOr<moeserve::model::ModelConfig> parsed =
      moeserve::model::parse_config(text, "config.json");
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().message().starts_with("config.json: "), parsed.status().message());
    return 0;
  }
  const moeserve::model::ModelConfig& c = *parsed;
  FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0, "sizes");
  FUZZ_CHECK(c.num_attention_heads > 0 && c.kv_lora_rank > 0 && c.v_head_dim > 0, "heads");
  FUZZ_CHECK(c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim");
  FUZZ_CHECK(c.moe_layer_freq >= 1, "moe_layer_freq");
  FUZZ_CHECK(c.first_k_dense_replace >= 0 && c.first_k_dense_replace <= c.num_hidden_layers,
             "first_k_dense_replace");
  FUZZ_CHECK(c.qk_head_dim() > 0, "qk_head_dim");
  FUZZ_CHECK(c.shared_intermediate_size() >= 0, "shared_intermediate_size");
  const std::vector<int64_t> moe = c.moe_layers();
  for (size_t i = 0; i < moe.size(); ++i) {
    FUZZ_CHECK(c.is_moe_layer(moe[i]) && moe[i] < c.num_hidden_layers, "moe_layers");
    FUZZ_CHECK(i == 0 || moe[i] > moe[i - 1], "moe_layers not ascending");
  }
  if (!moe.empty()) {
    FUZZ_CHECK(c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts,
               "num_experts_per_tok");
  }
  // The integer fields parse_config reads at the top level.
  static constexpr const char* kIntegers[] = {"bos_token_id",
                                              "first_k_dense_replace",
                                              "hidden_size",
                                              "intermediate_size",
                                              "kv_lora_rank",
                                              "max_position_embeddings",
                                              "moe_intermediate_size",
                                              "moe_layer_freq",
                                              "n_group",
                                              "n_routed_experts",
                                              "n_shared_experts",
                                              "num_attention_heads",
                                              "num_experts_per_tok",
                                              "num_hidden_layers",
                                              "num_key_value_heads",
                                              "num_nextn_predict_layers",
                                              "q_lora_rank",
                                              "qk_nope_head_dim",
                                              "qk_rope_head_dim",
                                              "topk_group",
                                              "v_head_dim",
                                              "vocab_size"};
  const nlohmann::json input = nlohmann::json::parse(text);
  for (const char* key : kIntegers) {
    auto it = input.find(key);
    if (it == input.end()) continue;
    const nlohmann::json& value = *it;
    FUZZ_CHECK(!value.is_number_unsigned() ||
                   value.get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()},
               std::string(key) + ": an integer out of range was accepted");
  }
  return 0;
}
