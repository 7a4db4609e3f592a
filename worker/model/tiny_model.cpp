#include "worker/model/tiny_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "common/log.h"
#include "worker/model/float_formats.h"
#include "worker/model/safetensors.h"
#include "worker/model/tiny_tokenizer.h"

namespace moeserve::model {
namespace {

using nlohmann::ordered_json;

constexpr int64_t kBlock = 128;
constexpr float kFp8Max = 448.0f;
constexpr int64_t kTokenizerVocab = 512;
constexpr int64_t kShardTargetBytes = 256ll << 20;

// Dimensions of the presets. The tiny one leaves partial 128-blocks in most matrices
// (160 = 128 + 32, q_b rows 192, kv_a rows 80, intermediate 320) so FP8 edge blocks are
// exercised; bench-1b is DeepSeek-V3-shaped at about 1B parameters.
struct PresetDims {
  int64_t vocab_size, hidden_size, intermediate_size, moe_intermediate_size, num_hidden_layers,
      num_attention_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
      v_head_dim, n_routed_experts, num_experts_per_tok, n_group, topk_group,
      max_position_embeddings, yarn_original_max_position_embeddings;
};
constexpr PresetDims kTinyDims = {
    kTokenizerVocab, 160, 320, 96, 3, 4, 96, 64, 32, 16, 32, 16, 4, 4, 2, 4096, 1024};
constexpr PresetDims kBench1bDims = {16384, 1024, 2816, 384, 12, 8, 384,   256, 64,
                                     32,    64,   64,   8,   8,  4, 16384, 4096};

enum class Init {
  kMatrix,     // normal / sqrt(cols)
  kEmbedding,  // normal (rows are normalised before use)
  kRouter,     // 2 x normal / sqrt(cols): logits of spread ~2, so routing varies
  kNorm,       // 1 + 0.1 x normal
  kBias,       // 0.1 x normal, stored F32
};

struct TensorSpec {
  std::string name;
  int64_t rows = 0;
  int64_t cols = 0;  // 0 for vectors
  Init init = Init::kMatrix;
  bool quantizable = false;  // F8_E4M3 in FP8 checkpoints
  std::string stream;        // name whose values it holds (MTP copies share the main ones)
  bool mtp = false;
  bool routed_expert = false;

  int64_t numel() const { return cols == 0 ? rows : rows * cols; }
};

// The tensor list of a checkpoint, in file order, from the config alone.
class TensorLister {
 public:
  explicit TensorLister(const ModelConfig& c) : c_(c) {}

  std::vector<TensorSpec> list() {
    matrix("model.embed_tokens.weight", c_.vocab_size, c_.hidden_size, Init::kEmbedding, false);
    for (int64_t i = 0; i < c_.num_hidden_layers; ++i) layer(i);
    vector("model.norm.weight", c_.hidden_size, Init::kNorm);
    if (!c_.tie_word_embeddings) {
      matrix("lm_head.weight", c_.vocab_size, c_.hidden_size, Init::kMatrix, false);
    }
    mtp_ = true;
    for (int64_t k = 0; k < c_.num_nextn_predict_layers; ++k) {
      const int64_t index = c_.num_hidden_layers + k;
      const std::string p = "model.layers." + std::to_string(index) + ".";
      copy(p + "embed_tokens.weight", "model.embed_tokens.weight", c_.vocab_size, Init::kEmbedding);
      vector(p + "enorm.weight", c_.hidden_size, Init::kNorm);
      vector(p + "hnorm.weight", c_.hidden_size, Init::kNorm);
      matrix(p + "eh_proj.weight", c_.hidden_size, 2 * c_.hidden_size, Init::kMatrix, false);
      vector(p + "shared_head.norm.weight", c_.hidden_size, Init::kNorm);
      copy(p + "shared_head.head.weight",
           c_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", c_.vocab_size,
           c_.tie_word_embeddings ? Init::kEmbedding : Init::kMatrix);
      layer(index);
    }
    return std::move(specs_);
  }

 private:
  void layer(int64_t index) {
    const std::string p = "model.layers." + std::to_string(index) + ".";
    const int64_t h = c_.hidden_size;
    const int64_t heads = c_.num_attention_heads;
    vector(p + "input_layernorm.weight", h, Init::kNorm);
    const std::string a = p + "self_attn.";
    if (c_.has_q_lora()) {
      matrix(a + "q_a_proj.weight", c_.q_lora_rank, h, Init::kMatrix, true);
      vector(a + "q_a_layernorm.weight", c_.q_lora_rank, Init::kNorm);
      matrix(a + "q_b_proj.weight", heads * c_.qk_head_dim(), c_.q_lora_rank, Init::kMatrix, true);
    } else {
      matrix(a + "q_proj.weight", heads * c_.qk_head_dim(), h, Init::kMatrix, true);
    }
    matrix(a + "kv_a_proj_with_mqa.weight", c_.kv_lora_rank + c_.qk_rope_head_dim, h, Init::kMatrix,
           true);
    vector(a + "kv_a_layernorm.weight", c_.kv_lora_rank, Init::kNorm);
    matrix(a + "kv_b_proj.weight", heads * (c_.qk_nope_head_dim + c_.v_head_dim), c_.kv_lora_rank,
           Init::kMatrix, true);
    matrix(a + "o_proj.weight", h, heads * c_.v_head_dim, Init::kMatrix, true);
    vector(p + "post_attention_layernorm.weight", h, Init::kNorm);
    if (!c_.is_moe_layer(index)) {
      mlp(p + "mlp.", c_.intermediate_size, false);
      return;
    }
    matrix(p + "mlp.gate.weight", c_.n_routed_experts, h, Init::kRouter, false);
    if (c_.topk_method == TopkMethod::kNoauxTc) {
      vector(p + "mlp.gate.e_score_correction_bias", c_.n_routed_experts, Init::kBias);
    }
    for (int64_t e = 0; e < c_.n_routed_experts; ++e) {
      mlp(p + "mlp.experts." + std::to_string(e) + ".", c_.moe_intermediate_size, true);
    }
    if (c_.n_shared_experts > 0) {
      mlp(p + "mlp.shared_experts.", c_.shared_intermediate_size(), false);
    }
  }

  void mlp(const std::string& p, int64_t intermediate, bool routed) {
    const size_t first = specs_.size();
    matrix(p + "gate_proj.weight", intermediate, c_.hidden_size, Init::kMatrix, true);
    matrix(p + "up_proj.weight", intermediate, c_.hidden_size, Init::kMatrix, true);
    matrix(p + "down_proj.weight", c_.hidden_size, intermediate, Init::kMatrix, true);
    for (size_t i = first; i < specs_.size(); ++i) specs_[i].routed_expert = routed;
  }

  void matrix(const std::string& name, int64_t rows, int64_t cols, Init init, bool quantizable) {
    specs_.push_back({name, rows, cols, init, quantizable, name, mtp_, false});
  }
  void vector(const std::string& name, int64_t size, Init init) {
    specs_.push_back({name, size, 0, init, false, name, mtp_, false});
  }
  void copy(const std::string& name, const std::string& of, int64_t rows, Init init) {
    specs_.push_back({name, rows, c_.hidden_size, init, false, of, mtp_, false});
  }

  const ModelConfig& c_;
  std::vector<TensorSpec> specs_;
  bool mtp_ = false;
};

// splitmix64 with Marsaglia's polar form of Box-Muller: the same stream on every
// platform (no std::normal_distribution, whose algorithm differs between libraries).
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : state_(seed) {}

  double next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u, v, s;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double factor = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * factor;
    have_spare_ = true;
    return u * factor;
  }

 private:
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  uint64_t state_;
  double spare_ = 0.0;
  bool have_spare_ = false;
};

uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : text) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

std::vector<float> generate_values(const TensorSpec& spec, uint64_t seed) {
  NormalStream normal(seed ^ fnv1a(spec.stream));
  std::vector<float> values(static_cast<size_t>(spec.numel()));
  const double fan_in = static_cast<double>(std::max<int64_t>(spec.cols, 1));
  double scale = 1.0;
  double offset = 0.0;
  switch (spec.init) {
    case Init::kMatrix: scale = 1.0 / std::sqrt(fan_in); break;
    case Init::kEmbedding: scale = 1.0; break;
    case Init::kRouter: scale = 2.0 / std::sqrt(fan_in); break;
    case Init::kNorm:
      scale = 0.1;
      offset = 1.0;
      break;
    case Init::kBias: scale = 0.1; break;
  }
  for (float& v : values) v = static_cast<float>(offset + scale * normal.next());
  return values;
}

struct EncodedTensor {
  TensorSpec spec;
  DType dtype = DType::kBF16;
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> scale_inv;  // F32 [ceil(rows/128), ceil(cols/128)], FP8 only
};

bool is_fp8(const TensorSpec& spec, WeightPrecision precision) {
  return spec.quantizable && precision == WeightPrecision::kFp8;
}

void put_f32(std::vector<uint8_t>& out, size_t index, float value) {
  std::memcpy(out.data() + index * 4, &value, 4);
}

// DeepSeek-V3's block quantisation: per 128x128 block, scale = amax / 448 and the
// stored value is fp8(w / scale); scale is saved as the block's scale_inv.
void quantize_fp8(const std::vector<float>& w, int64_t rows, int64_t cols, EncodedTensor& out) {
  const int64_t srows = (rows + kBlock - 1) / kBlock;
  const int64_t scols = (cols + kBlock - 1) / kBlock;
  out.dtype = DType::kF8E4M3;
  out.bytes.resize(static_cast<size_t>(rows * cols));
  out.scale_inv.resize(static_cast<size_t>(srows * scols) * 4);
  for (int64_t br = 0; br < srows; ++br) {
    for (int64_t bc = 0; bc < scols; ++bc) {
      const int64_t r_end = std::min(rows, (br + 1) * kBlock);
      const int64_t c_end = std::min(cols, (bc + 1) * kBlock);
      float amax = 0.0f;
      for (int64_t r = br * kBlock; r < r_end; ++r) {
        for (int64_t c = bc * kBlock; c < c_end; ++c)
          amax = std::max(amax, std::fabs(w[r * cols + c]));
      }
      const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
      put_f32(out.scale_inv, static_cast<size_t>(br * scols + bc), scale);
      for (int64_t r = br * kBlock; r < r_end; ++r) {
        for (int64_t c = bc * kBlock; c < c_end; ++c) {
          out.bytes[r * cols + c] = float_to_fp8_e4m3(w[r * cols + c] / scale);
        }
      }
    }
  }
}

EncodedTensor encode(const TensorSpec& spec, const TinyModelOptions& options) {
  const std::vector<float> values = generate_values(spec, options.seed);
  EncodedTensor out;
  out.spec = spec;
  if (is_fp8(spec, options.precision)) {
    quantize_fp8(values, spec.rows, spec.cols, out);
  } else if (spec.init == Init::kBias) {
    out.dtype = DType::kF32;
    out.bytes.resize(values.size() * 4);
    for (size_t i = 0; i < values.size(); ++i) put_f32(out.bytes, i, values[i]);
  } else {
    out.dtype = DType::kBF16;
    out.bytes.resize(values.size() * 2);
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t bits = float_to_bf16(values[i]);
      std::memcpy(out.bytes.data() + i * 2, &bits, 2);
    }
  }
  return out;
}

int64_t stored_bytes(const TensorSpec& spec, WeightPrecision precision) {
  if (is_fp8(spec, precision)) {
    return spec.numel() +
           ((spec.rows + kBlock - 1) / kBlock) * ((spec.cols + kBlock - 1) / kBlock) * 4;
  }
  return spec.numel() * (spec.init == Init::kBias ? 4 : 2);
}

std::vector<int64_t> shape_of(const TensorSpec& spec) {
  if (spec.cols == 0) return {spec.rows};
  return {spec.rows, spec.cols};
}

// Encodes the shard's tensors on all cores (values depend only on seed and name, so
// the result does not depend on the thread count).
std::vector<EncodedTensor> encode_all(const std::vector<TensorSpec>& specs,
                                      const TinyModelOptions& options) {
  std::vector<EncodedTensor> out(specs.size());
  const size_t threads =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, std::max<size_t>(specs.size(), 1));
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = t; i < specs.size(); i += threads) out[i] = encode(specs[i], options);
    });
  }
  for (std::thread& thread : pool) thread.join();
  return out;
}

std::string shard_name(int64_t index, int64_t count) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "model-%05lld-of-%05lld.safetensors",
                static_cast<long long>(index + 1), static_cast<long long>(count));
  return buffer;
}

Status write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return internal_error(path.string() + ": write failed");
  return ok_status();
}

Status write_json(const std::filesystem::path& path, const ordered_json& value) {
  return write_text(path, value.dump(2) + "\n");
}

StatusOr<ModelConfig> config_for(const TinyModelOptions& options) {
  return parse_config(tiny_model_config_json(options).dump(), "generated config.json");
}

}  // namespace

StatusOr<Architecture> parse_architecture_flag(std::string_view text) {
  if (text == "deepseek_v3") return Architecture::kDeepseekV3;
  if (text == "deepseek_v2") return Architecture::kDeepseekV2;
  return invalid_argument_error("--arch: expected deepseek_v3 or deepseek_v2, got \"" +
                                std::string(text) + "\"");
}

StatusOr<WeightPrecision> parse_precision_flag(std::string_view text) {
  if (text == "bf16") return WeightPrecision::kBf16;
  if (text == "fp8") return WeightPrecision::kFp8;
  return invalid_argument_error("--precision: expected bf16 or fp8, got \"" + std::string(text) +
                                "\"");
}

StatusOr<TinyPreset> parse_preset_flag(std::string_view text) {
  if (text == "tiny") return TinyPreset::kTiny;
  if (text == "bench-1b") return TinyPreset::kBench1b;
  return invalid_argument_error("--preset: expected tiny or bench-1b, got \"" + std::string(text) +
                                "\"");
}

std::string_view preset_name(TinyPreset preset) {
  return preset == TinyPreset::kTiny ? "tiny" : "bench-1b";
}

ordered_json tiny_model_config_json(const TinyModelOptions& options) {
  const bool v3 = options.architecture == Architecture::kDeepseekV3;
  const bool tiny = options.preset == TinyPreset::kTiny;
  ordered_json c;
  c["architectures"] = {v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
  c["model_type"] = v3 ? "deepseek_v3" : "deepseek_v2";
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = 0;
  c["eos_token_id"] = 1;
  c["hidden_act"] = "silu";
  c["initializer_range"] = 0.02;
  const PresetDims& d = tiny ? kTinyDims : kBench1bDims;
  c["vocab_size"] = d.vocab_size;
  c["hidden_size"] = d.hidden_size;
  c["intermediate_size"] = d.intermediate_size;
  c["moe_intermediate_size"] = d.moe_intermediate_size;
  c["num_hidden_layers"] = d.num_hidden_layers;
  c["num_attention_heads"] = d.num_attention_heads;
  c["num_key_value_heads"] = d.num_attention_heads;
  // V2 presets have no query compression (q_lora_rank null), as DeepSeek-V2-Lite.
  c["q_lora_rank"] = v3 ? ordered_json(d.q_lora_rank) : ordered_json(nullptr);
  c["kv_lora_rank"] = d.kv_lora_rank;
  c["qk_nope_head_dim"] = d.qk_nope_head_dim;
  c["qk_rope_head_dim"] = d.qk_rope_head_dim;
  c["v_head_dim"] = d.v_head_dim;
  c["n_routed_experts"] = d.n_routed_experts;
  c["n_shared_experts"] = v3 ? 1 : 2;
  c["num_experts_per_tok"] = d.num_experts_per_tok;
  c["n_group"] = d.n_group;
  c["topk_group"] = d.topk_group;
  c["max_position_embeddings"] = d.max_position_embeddings;
  c["topk_method"] = v3 ? "noaux_tc" : "group_limited_greedy";
  c["scoring_func"] = v3 ? "sigmoid" : "softmax";
  c["norm_topk_prob"] = v3;
  c["routed_scaling_factor"] = v3 ? 2.5 : 1.0;
  c["first_k_dense_replace"] = 1;
  c["moe_layer_freq"] = 1;
  c["num_nextn_predict_layers"] = v3 ? 1 : 0;
  c["rms_norm_eps"] = 1e-6;
  c["rope_theta"] = 10000.0;
  if (v3) {
    c["rope_scaling"] = {
        {"beta_fast", 32},
        {"beta_slow", 1},
        {"factor", 4.0},
        {"mscale", 1.0},
        {"mscale_all_dim", 1.0},
        {"original_max_position_embeddings", d.yarn_original_max_position_embeddings},
        {"type", "yarn"}};
  } else {
    c["rope_scaling"] = nullptr;
  }
  c["tie_word_embeddings"] = false;
  c["torch_dtype"] = "bfloat16";
  if (options.precision == WeightPrecision::kFp8) {
    c["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {kBlock, kBlock}}};
  }
  c["use_cache"] = true;
  return c;
}

ParameterCounts count_parameters(const ModelConfig& config) {
  ParameterCounts counts;
  const double idle_share =
      config.n_routed_experts > 0
          ? static_cast<double>(config.n_routed_experts - config.num_experts_per_tok) /
                static_cast<double>(config.n_routed_experts)
          : 0.0;
  double active = 0;
  double bytes_bf16 = 0;
  double bytes_fp8 = 0;
  for (const TensorSpec& spec : TensorLister(config).list()) {
    if (spec.mtp) {
      counts.mtp += spec.numel();
      continue;
    }
    counts.total += spec.numel();
    double share = 1.0;
    if (spec.init == Init::kEmbedding) share = 1.0 / static_cast<double>(spec.rows);
    if (spec.routed_expert) share = 1.0 - idle_share;
    active += share * static_cast<double>(spec.numel());
    bytes_bf16 += share * static_cast<double>(stored_bytes(spec, WeightPrecision::kBf16));
    bytes_fp8 += share * static_cast<double>(stored_bytes(spec, WeightPrecision::kFp8));
  }
  counts.active_per_token = std::llround(active);
  counts.active_bytes_bf16 = std::llround(bytes_bf16);
  counts.active_bytes_fp8 = std::llround(bytes_fp8);
  return counts;
}

Status write_tiny_model(const std::string& dir, const TinyModelOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(const ModelConfig config, config_for(options));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error(dir + ": cannot create: " + ec.message());
  const std::filesystem::path root(dir);

  const std::vector<TensorSpec> specs = TensorLister(config).list();
  int64_t total_bytes = 0;
  for (const TensorSpec& spec : specs) total_bytes += stored_bytes(spec, options.precision);
  const int64_t shards =
      std::max<int64_t>(2, (total_bytes + kShardTargetBytes - 1) / kShardTargetBytes);

  // Consecutive tensors fill shards of about total/shards bytes each.
  std::vector<std::vector<TensorSpec>> shard_specs(static_cast<size_t>(shards));
  int64_t before = 0;
  for (const TensorSpec& spec : specs) {
    const int64_t shard = std::min<int64_t>(shards - 1, before * shards / total_bytes);
    shard_specs[static_cast<size_t>(shard)].push_back(spec);
    before += stored_bytes(spec, options.precision);
  }

  std::map<std::string, std::string> weight_map;
  for (int64_t s = 0; s < shards; ++s) {
    const std::string file = shard_name(s, shards);
    const std::vector<EncodedTensor> encoded = encode_all(shard_specs[s], options);
    std::vector<TensorWrite> writes;
    for (const EncodedTensor& t : encoded) {
      writes.push_back({t.spec.name, t.dtype, shape_of(t.spec), t.bytes});
      weight_map[t.spec.name] = file;
      if (!t.scale_inv.empty()) {
        const std::string scale_name = t.spec.name + "_scale_inv";
        writes.push_back(
            {scale_name,
             DType::kF32,
             {(t.spec.rows + kBlock - 1) / kBlock, (t.spec.cols + kBlock - 1) / kBlock},
             t.scale_inv});
        weight_map[scale_name] = file;
      }
    }
    MOESERVE_RETURN_IF_ERROR(write_safetensors((root / file).string(), writes, {{"format", "pt"}}));
    log::info("wrote shard", {{"file", file},
                              {"tensors", static_cast<int64_t>(writes.size())},
                              {"shard", s + 1},
                              {"shards", shards}});
  }

  ordered_json index;
  index["metadata"] = {{"total_size", total_bytes}};
  index["weight_map"] = ordered_json::object();
  for (const auto& [name, file] : weight_map) index["weight_map"][name] = file;
  MOESERVE_RETURN_IF_ERROR(write_json(root / "model.safetensors.index.json", index));
  MOESERVE_RETURN_IF_ERROR(write_json(root / "config.json", tiny_model_config_json(options)));

  MOESERVE_ASSIGN_OR_RETURN(const TinyTokenizer tokenizer, make_tiny_tokenizer(kTokenizerVocab));
  MOESERVE_RETURN_IF_ERROR(write_json(root / "tokenizer.json", tokenizer.tokenizer_json));
  MOESERVE_RETURN_IF_ERROR(
      write_json(root / "tokenizer_config.json", tokenizer.tokenizer_config_json));
  MOESERVE_RETURN_IF_ERROR(
      write_json(root / "generation_config.json", {{"_from_model_config", true},
                                                   {"bos_token_id", tokenizer.bos_token_id},
                                                   {"eos_token_id", tokenizer.eos_token_id},
                                                   {"do_sample", true},
                                                   {"temperature", 0.6},
                                                   {"top_p", 0.95}}));
  return ok_status();
}

}  // namespace moeserve::model
