#include "worker/model/config.h"

#include <optional>

#include <nlohmann/json.hpp>

#include "common/file.h"

namespace moeserve::model {
namespace {

using nlohmann::json;

// Reads typed fields from the top level (or a nested object) of config.json and keeps
// the first error, so parsing reads as a flat list of fields.
class FieldReader {
 public:
  FieldReader(const json& object, std::string prefix)
      : object_(object), prefix_(std::move(prefix)) {}

  // Absent -> `absent`; null -> `if_null` when given, else an error.
  int64_t integer(const char* key, int64_t absent, std::optional<int64_t> if_null = std::nullopt) {
    const json* value = lookup(key);
    if (value != nullptr && value->is_null()) {
      if (if_null) return *if_null;
      fail(key, "expected an integer, got null");
      return absent;
    }
    return typed<int64_t>(key, absent, &json::is_number_integer, "an integer");
  }
  // For the others, absent and null both give `absent`.
  double number(const char* key, double absent) {
    return typed<double>(key, absent, &json::is_number, "a number");
  }
  bool boolean(const char* key, bool absent) {
    return typed<bool>(key, absent, &json::is_boolean, "true or false");
  }
  std::string string(const char* key, const std::string& absent) {
    return typed<std::string>(key, absent, &json::is_string, "a string");
  }

  const json* lookup(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  void fail(const std::string& key, const std::string& message) {
    if (status_.ok()) status_ = invalid_argument_error(prefix_ + key + ": " + message);
  }

  const Status& status() const { return status_; }

 private:
  template <typename T>
  T typed(const char* key, T absent, bool (json::*is_type)() const noexcept, const char* expected) {
    const json* value = lookup(key);
    if (value == nullptr || value->is_null()) return absent;
    if (!(value->*is_type)()) {
      fail(key, std::string("expected ") + expected + ", got " + value->dump());
      return absent;
    }
    return value->get<T>();
  }

  const json& object_;
  std::string prefix_;
  Status status_;
};

struct ArchitectureInfo {
  Architecture architecture;
  std::string_view class_name;
  std::string_view model_type;
};

constexpr ArchitectureInfo kArchitectures[] = {
    {Architecture::kDeepseekV3, "DeepseekV3ForCausalLM", "deepseek_v3"},
    {Architecture::kDeepseekV2, "DeepseekV2ForCausalLM", "deepseek_v2"},
};

StatusOr<ArchitectureInfo> resolve_architecture(const json& root, const std::string& prefix) {
  auto arch_it = root.find("architectures");
  if (arch_it != root.end() && !arch_it->is_null()) {
    if (!arch_it->is_array() || arch_it->empty() || !(*arch_it)[0].is_string()) {
      return invalid_argument_error(prefix + "architectures: expected a non-empty list of strings");
    }
    const std::string name = (*arch_it)[0].get<std::string>();
    for (const ArchitectureInfo& info : kArchitectures) {
      if (info.class_name == name) return info;
    }
    return invalid_argument_error(prefix + "architectures: unsupported architecture \"" + name +
                                  "\" (supported: DeepseekV3ForCausalLM, DeepseekV2ForCausalLM)");
  }
  auto type_it = root.find("model_type");
  if (type_it != root.end() && type_it->is_string()) {
    const std::string type = type_it->get<std::string>();
    for (const ArchitectureInfo& info : kArchitectures) {
      if (info.model_type == type) return info;
    }
    return invalid_argument_error(prefix + "model_type: unsupported model type \"" + type +
                                  "\" (supported: deepseek_v3, deepseek_v2)");
  }
  return invalid_argument_error(prefix +
                                "architectures: missing (and no model_type); expected "
                                "DeepseekV3ForCausalLM or DeepseekV2ForCausalLM");
}

// Defaults of the checkpoints' own configuration classes: DeepseekV3Config
// (configuration_deepseek.py of DeepSeek-V3, as in transformers) and DeepseekV2Config
// (configuration_deepseek.py of DeepSeek-V2, where MoE fields default to None = dense).
ModelConfig defaults_for(Architecture architecture) {
  ModelConfig c;
  c.architecture = architecture;
  if (architecture == Architecture::kDeepseekV3) {
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 61;
    c.num_attention_heads = 128;
    c.q_lora_rank = 1536;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 8;
    c.n_group = 8;
    c.topk_group = 4;
    c.topk_method = TopkMethod::kNoauxTc;
    c.scoring_func = ScoringFunc::kSigmoid;
    c.norm_topk_prob = true;
    c.routed_scaling_factor = 2.5;
    c.first_k_dense_replace = 3;
    c.num_nextn_predict_layers = 1;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 0;
    c.eos_token_ids = {1};
  } else {
    c.vocab_size = 102400;
    c.hidden_size = 4096;
    c.intermediate_size = 11008;
    c.moe_intermediate_size = 1407;
    c.num_hidden_layers = 30;
    c.num_attention_heads = 32;
    c.q_lora_rank = 1536;
    c.n_routed_experts = 0;
    c.n_shared_experts = 0;
    c.num_experts_per_tok = 0;
    c.n_group = 1;
    c.topk_group = 1;
    c.topk_method = TopkMethod::kGreedy;
    c.scoring_func = ScoringFunc::kSoftmax;
    c.norm_topk_prob = false;
    c.routed_scaling_factor = 1.0;
    c.first_k_dense_replace = 0;
    c.num_nextn_predict_layers = 0;
    c.max_position_embeddings = 2048;
    c.bos_token_id = 100000;
    c.eos_token_ids = {100001};
  }
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.moe_layer_freq = 1;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = false;
  return c;
}

Status parse_topk_method(const std::string& text, const std::string& prefix, TopkMethod* out) {
  // "gready" is the literal default of DeepSeek-V2's configuration class.
  if (text == "greedy" || text == "gready") {
    *out = TopkMethod::kGreedy;
  } else if (text == "group_limited_greedy") {
    *out = TopkMethod::kGroupLimitedGreedy;
  } else if (text == "noaux_tc") {
    *out = TopkMethod::kNoauxTc;
  } else {
    return invalid_argument_error(prefix + "topk_method: unsupported value \"" + text +
                                  "\" (expected greedy, group_limited_greedy or noaux_tc)");
  }
  return ok_status();
}

Status parse_scoring_func(const std::string& text, const std::string& prefix, ScoringFunc* out) {
  if (text == "softmax") {
    *out = ScoringFunc::kSoftmax;
  } else if (text == "sigmoid") {
    *out = ScoringFunc::kSigmoid;
  } else {
    return invalid_argument_error(prefix + "scoring_func: unsupported value \"" + text +
                                  "\" (expected softmax or sigmoid)");
  }
  return ok_status();
}

Status parse_rope_scaling(const json& root, const std::string& prefix, RopeScaling* out) {
  auto it = root.find("rope_scaling");
  if (it == root.end() || it->is_null()) return ok_status();
  if (!it->is_object()) return invalid_argument_error(prefix + "rope_scaling: expected an object");
  const std::string field_prefix = prefix + "rope_scaling.";
  FieldReader reader(*it, field_prefix);
  std::string type = reader.string("type", "");
  if (type.empty()) type = reader.string("rope_type", "");
  MOESERVE_RETURN_IF_ERROR(reader.status());
  if (type != "yarn") {
    return invalid_argument_error(field_prefix + "type: unsupported rope scaling \"" + type +
                                  "\" (supported: yarn)");
  }
  RopeScaling r;
  r.enabled = true;
  r.factor = reader.number("factor", 1.0);
  r.original_max_position_embeddings = reader.integer("original_max_position_embeddings", 4096);
  r.beta_fast = reader.number("beta_fast", 32.0);
  r.beta_slow = reader.number("beta_slow", 1.0);
  r.mscale = reader.number("mscale", 1.0);
  r.mscale_all_dim = reader.number("mscale_all_dim", 0.0);
  MOESERVE_RETURN_IF_ERROR(reader.status());
  if (r.factor < 1.0) return invalid_argument_error(field_prefix + "factor must be >= 1");
  if (r.original_max_position_embeddings <= 0) {
    return invalid_argument_error(field_prefix + "original_max_position_embeddings must be > 0");
  }
  if (r.beta_fast <= r.beta_slow) {
    return invalid_argument_error(field_prefix + "beta_fast must be greater than beta_slow");
  }
  *out = r;
  return ok_status();
}

Status parse_quantization(const json& root, const std::string& prefix, QuantizationConfig* out) {
  auto it = root.find("quantization_config");
  if (it == root.end() || it->is_null()) return ok_status();
  if (!it->is_object()) {
    return invalid_argument_error(prefix + "quantization_config: expected an object");
  }
  const std::string field_prefix = prefix + "quantization_config.";
  FieldReader reader(*it, field_prefix);
  QuantizationConfig q;
  q.fp8 = true;
  const std::string method = reader.string("quant_method", "");
  q.fmt = reader.string("fmt", "e4m3");
  q.activation_scheme = reader.string("activation_scheme", "dynamic");
  MOESERVE_RETURN_IF_ERROR(reader.status());
  if (method != "fp8") {
    return invalid_argument_error(field_prefix + "quant_method: unsupported \"" + method +
                                  "\" (supported: fp8)");
  }
  if (q.fmt != "e4m3") {
    return invalid_argument_error(field_prefix + "fmt: unsupported \"" + q.fmt +
                                  "\" (supported: e4m3)");
  }
  if (q.activation_scheme != "dynamic") {
    return invalid_argument_error(field_prefix + "activation_scheme: unsupported \"" +
                                  q.activation_scheme + "\" (supported: dynamic)");
  }
  if (const json* block = reader.lookup("weight_block_size"); block != nullptr) {
    if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
        !(*block)[1].is_number_integer()) {
      return invalid_argument_error(field_prefix +
                                    "weight_block_size: expected two integers [rows, cols]");
    }
    q.block_rows = (*block)[0].get<int64_t>();
    q.block_cols = (*block)[1].get<int64_t>();
  }
  if (q.block_rows != 128 || q.block_cols != 128) {
    return invalid_argument_error(field_prefix + "weight_block_size: unsupported [" +
                                  std::to_string(q.block_rows) + ", " +
                                  std::to_string(q.block_cols) + "] (supported: [128, 128])");
  }
  *out = q;
  return ok_status();
}

Status parse_eos(const json& root, const std::string& prefix, std::vector<int64_t>* out) {
  auto it = root.find("eos_token_id");
  if (it == root.end()) return ok_status();
  if (it->is_null()) {
    out->clear();
  } else if (it->is_number_integer()) {
    *out = {it->get<int64_t>()};
  } else if (it->is_array()) {
    out->clear();
    for (const json& id : *it) {
      if (!id.is_number_integer()) {
        return invalid_argument_error(prefix + "eos_token_id: expected integers");
      }
      out->push_back(id.get<int64_t>());
    }
  } else {
    return invalid_argument_error(prefix + "eos_token_id: expected an integer or a list");
  }
  return ok_status();
}

Status require(bool ok, const std::string& prefix, const std::string& message) {
  return ok ? ok_status() : invalid_argument_error(prefix + message);
}

Status validate(const ModelConfig& c, const std::string& p) {
  MOESERVE_RETURN_IF_ERROR(require(c.vocab_size > 0, p, "vocab_size must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.hidden_size > 0, p, "hidden_size must be positive"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.num_hidden_layers > 0, p, "num_hidden_layers must be positive"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.num_attention_heads > 0, p, "num_attention_heads must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.q_lora_rank >= 0, p, "q_lora_rank must be >= 0 or null"));
  MOESERVE_RETURN_IF_ERROR(require(c.kv_lora_rank > 0, p, "kv_lora_rank must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.qk_nope_head_dim > 0, p, "qk_nope_head_dim must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0, p,
                                   "qk_rope_head_dim must be positive and even"));
  MOESERVE_RETURN_IF_ERROR(require(c.v_head_dim > 0, p, "v_head_dim must be positive"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.max_position_embeddings > 0, p, "max_position_embeddings must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.rms_norm_eps > 0, p, "rms_norm_eps must be positive"));
  MOESERVE_RETURN_IF_ERROR(require(c.rope_theta > 0, p, "rope_theta must be positive"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.num_nextn_predict_layers >= 0, p, "num_nextn_predict_layers must be >= 0"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.first_k_dense_replace >= 0 && c.first_k_dense_replace <= c.num_hidden_layers, p,
              "first_k_dense_replace must be between 0 and num_hidden_layers"));
  MOESERVE_RETURN_IF_ERROR(require(c.moe_layer_freq >= 1, p, "moe_layer_freq must be >= 1"));
  MOESERVE_RETURN_IF_ERROR(require(c.n_routed_experts >= 0, p, "n_routed_experts must be >= 0"));
  MOESERVE_RETURN_IF_ERROR(require(c.n_shared_experts >= 0, p, "n_shared_experts must be >= 0"));

  bool any_dense = false;
  bool any_moe = false;
  for (int64_t layer = 0; layer < c.num_hidden_layers + c.num_nextn_predict_layers; ++layer) {
    (c.is_moe_layer(layer) ? any_moe : any_dense) = true;
  }
  if (any_dense) {
    MOESERVE_RETURN_IF_ERROR(
        require(c.intermediate_size > 0, p, "intermediate_size must be positive"));
  }
  if (!any_moe) return ok_status();

  const std::string counts = " (n_group " + std::to_string(c.n_group) + ", n_routed_experts " +
                             std::to_string(c.n_routed_experts) + ")";
  MOESERVE_RETURN_IF_ERROR(
      require(c.moe_intermediate_size > 0, p, "moe_intermediate_size must be positive"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts, p,
              "num_experts_per_tok must be between 1 and n_routed_experts"));
  MOESERVE_RETURN_IF_ERROR(
      require(c.routed_scaling_factor > 0, p, "routed_scaling_factor must be positive"));
  if (c.topk_method == TopkMethod::kGreedy) return ok_status();
  MOESERVE_RETURN_IF_ERROR(require(c.n_group >= 1, p, "n_group must be >= 1"));
  MOESERVE_RETURN_IF_ERROR(require(c.n_routed_experts % c.n_group == 0, p,
                                   "n_group must divide n_routed_experts" + counts));
  MOESERVE_RETURN_IF_ERROR(require(c.topk_group >= 1 && c.topk_group <= c.n_group, p,
                                   "topk_group must be between 1 and n_group"));
  const int64_t per_group = c.n_routed_experts / c.n_group;
  MOESERVE_RETURN_IF_ERROR(
      require(c.num_experts_per_tok <= c.topk_group * per_group, p,
              "num_experts_per_tok must not exceed topk_group * experts per group"));
  if (c.topk_method == TopkMethod::kNoauxTc) {
    MOESERVE_RETURN_IF_ERROR(
        require(per_group >= 2, p,
                "noaux_tc scores each group by its two best experts; each group needs at least 2" +
                    counts));
  }
  return ok_status();
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

std::vector<int64_t> ModelConfig::moe_layers() const {
  std::vector<int64_t> layers;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer) {
    if (is_moe_layer(layer)) layers.push_back(layer);
  }
  return layers;
}

std::string_view topk_method_name(TopkMethod method) {
  switch (method) {
    case TopkMethod::kGreedy: return "greedy";
    case TopkMethod::kGroupLimitedGreedy: return "group_limited_greedy";
    case TopkMethod::kNoauxTc: return "noaux_tc";
  }
  return "unknown";
}

std::string_view scoring_func_name(ScoringFunc func) {
  return func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
}

StatusOr<ModelConfig> parse_config(std::string_view json_text, std::string_view source) {
  const std::string prefix = std::string(source) + ": ";
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return invalid_argument_error(prefix + "not valid JSON");
  if (!root.is_object()) return invalid_argument_error(prefix + "expected a JSON object");

  MOESERVE_ASSIGN_OR_RETURN(const ArchitectureInfo arch, resolve_architecture(root, prefix));
  ModelConfig c = defaults_for(arch.architecture);
  c.architecture_name = std::string(arch.class_name);

  FieldReader r(root, prefix);
  c.model_type = r.string("model_type", std::string(arch.model_type));
  c.torch_dtype = r.string("torch_dtype", "");
  c.vocab_size = r.integer("vocab_size", c.vocab_size);
  c.hidden_size = r.integer("hidden_size", c.hidden_size);
  c.intermediate_size = r.integer("intermediate_size", c.intermediate_size);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", c.moe_intermediate_size);
  c.num_hidden_layers = r.integer("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = r.integer("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads =
      r.integer("num_key_value_heads", c.num_attention_heads, c.num_attention_heads);
  c.q_lora_rank = r.integer("q_lora_rank", c.q_lora_rank, 0);
  c.kv_lora_rank = r.integer("kv_lora_rank", c.kv_lora_rank);
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim", c.qk_nope_head_dim);
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim", c.qk_rope_head_dim);
  c.v_head_dim = r.integer("v_head_dim", c.v_head_dim);
  c.n_routed_experts = r.integer("n_routed_experts", c.n_routed_experts, 0);
  c.n_shared_experts = r.integer("n_shared_experts", c.n_shared_experts, 0);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", c.num_experts_per_tok, 0);
  c.n_group = r.integer("n_group", c.n_group, 1);
  c.topk_group = r.integer("topk_group", c.topk_group, 1);
  const std::string topk_method =
      r.string("topk_method", std::string(topk_method_name(c.topk_method)));
  const std::string scoring =
      r.string("scoring_func", std::string(scoring_func_name(c.scoring_func)));
  c.norm_topk_prob = r.boolean("norm_topk_prob", c.norm_topk_prob);
  c.routed_scaling_factor = r.number("routed_scaling_factor", c.routed_scaling_factor);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", c.first_k_dense_replace);
  c.moe_layer_freq = r.integer("moe_layer_freq", c.moe_layer_freq);
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", c.num_nextn_predict_layers, 0);
  c.rms_norm_eps = r.number("rms_norm_eps", c.rms_norm_eps);
  c.rope_theta = r.number("rope_theta", c.rope_theta);
  c.max_position_embeddings = r.integer("max_position_embeddings", c.max_position_embeddings);
  c.bos_token_id = r.integer("bos_token_id", c.bos_token_id, -1);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", c.tie_word_embeddings);
  const std::string hidden_act = r.string("hidden_act", "silu");
  MOESERVE_RETURN_IF_ERROR(r.status());

  if (c.model_type != arch.model_type) {
    return invalid_argument_error(prefix + "model_type: \"" + c.model_type + "\" does not match " +
                                  std::string(arch.class_name) + " (expected \"" +
                                  std::string(arch.model_type) + "\")");
  }
  if (hidden_act != "silu") {
    return invalid_argument_error(prefix + "hidden_act: unsupported \"" + hidden_act +
                                  "\" (supported: silu)");
  }
  MOESERVE_RETURN_IF_ERROR(parse_topk_method(topk_method, prefix, &c.topk_method));
  MOESERVE_RETURN_IF_ERROR(parse_scoring_func(scoring, prefix, &c.scoring_func));
  MOESERVE_RETURN_IF_ERROR(parse_rope_scaling(root, prefix, &c.rope_scaling));
  MOESERVE_RETURN_IF_ERROR(parse_quantization(root, prefix, &c.quantization));
  MOESERVE_RETURN_IF_ERROR(parse_eos(root, prefix, &c.eos_token_ids));
  MOESERVE_RETURN_IF_ERROR(validate(c, prefix));
  return c;
}

StatusOr<ModelConfig> load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  MOESERVE_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  return parse_config(text, path);
}

}  // namespace moeserve::model
