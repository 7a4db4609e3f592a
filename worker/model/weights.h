// ModelWeights: a checkpoint bound to its ModelConfig, tensor by tensor, with the
// Hugging Face names of the DeepSeek-V2/V3 checkpoints.
//
// bind_weights checks that every tensor the config implies exists with the right shape
// and an allowed dtype, that every FP8 weight has its F32 `<name>_scale_inv` of shape
// [ceil(rows/128), ceil(cols/128)], and that the checkpoint holds nothing else (apart
// from known-ignorable tensors such as rotary_emb.inv_freq, and the MTP layers when they
// are not loaded). Errors name the file and the tensor.
//
// Matrices (Linear) stay in their stored format (FP8 1 byte per weight, never expanded),
// either in the checkpoint's mappings or copied once into huge pages (WeightMemory,
// BindOptions::memory). Norm vectors and the router's correction bias are small
// and are converted to float. A ModelWeights is valid as long as the checkpoint it was
// bound to lives; LoadedModel keeps both together. Read-only after binding; safe to
// share between threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/model/config.h"
#include "worker/model/dtype.h"
#include "worker/model/safetensors.h"

namespace moeserve::model {

// A weight matrix stored as [rows, cols] = [out_features, in_features] (y = W x).
// dtype is F32, BF16 or F8_E4M3. For F8_E4M3, scale_inv holds F32 block scales in
// row-major [ceil(rows/128), ceil(cols/128)]: the real weight is fp8 x scale_inv of its
// 128x128 block (edge blocks partial). Otherwise scale_inv is null.
struct Linear {
  std::string name;  // e.g. "model.layers.3.mlp.experts.7.up_proj.weight"
  DType dtype = DType::kBF16;
  const uint8_t* data = nullptr;
  const float* scale_inv = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  bool empty() const { return data == nullptr; }
  int64_t scale_rows() const { return (rows + 127) / 128; }
  int64_t scale_cols() const { return (cols + 127) / 128; }
  // Bytes of the weight itself plus its scales.
  size_t bytes() const;
};

// SwiGLU MLP: down(silu(gate x) * up x).
struct Mlp {
  Linear gate_proj;  // [intermediate, hidden]
  Linear up_proj;    // [intermediate, hidden]
  Linear down_proj;  // [hidden, intermediate]
};

// Multi-head latent attention (DeepSeek-V2/V3). H = num_attention_heads,
// qk = qk_nope_head_dim + qk_rope_head_dim.
struct Attention {
  // With q_lora_rank > 0: q = q_b_proj(rmsnorm(q_a_proj x)); else q = q_proj x.
  Linear q_a_proj;                    // [q_lora_rank, hidden]
  std::vector<float> q_a_layernorm;   // [q_lora_rank]
  Linear q_b_proj;                    // [H * qk, q_lora_rank], rows per head [nope | rope]
  Linear q_proj;                      // [H * qk, hidden] (q_lora_rank == 0 only)
  Linear kv_a_proj_with_mqa;          // [kv_lora_rank + rope, hidden]: [latent | k_rope]
  std::vector<float> kv_a_layernorm;  // [kv_lora_rank]
  Linear kv_b_proj;  // [H * (nope + v_head_dim), kv_lora_rank], rows per head [k_nope | v]
  Linear o_proj;     // [hidden, H * v_head_dim]
};

// DeepSeekMoE block: routed experts chosen by the router plus always-on shared experts
// (one fused MLP of moe_intermediate_size * n_shared_experts).
struct Moe {
  Linear gate;                                 // router [n_routed_experts, hidden], F32 or BF16
  std::vector<float> e_score_correction_bias;  // [n_routed_experts]; noaux_tc only
  std::vector<Mlp> experts;                    // n_routed_experts
  Mlp shared_experts;                          // empty Linears when n_shared_experts == 0
  bool has_shared_experts() const { return !shared_experts.down_proj.empty(); }
};

struct DecoderLayer {
  int64_t index = 0;
  std::vector<float> input_layernorm;           // [hidden]
  std::vector<float> post_attention_layernorm;  // [hidden]
  Attention self_attn;
  bool is_moe = false;
  Mlp mlp;  // dense layers
  Moe moe;  // MoE layers
};

// One multi-token-prediction module, stored as model.layers.<num_hidden_layers + k>.
// h' = block(eh_proj([enorm(embed(t+1)) ; hnorm(h)])), logits = head(norm(h')).
struct MtpLayer {
  Linear embed_tokens;  // its own copy when stored, else the main model's
  std::vector<float> enorm;
  std::vector<float> hnorm;
  Linear eh_proj;  // [hidden, 2 * hidden]
  std::vector<float> shared_head_norm;
  Linear shared_head_head;  // its own copy when stored, else the main lm_head
  DecoderLayer block;
};

struct ModelWeights {
  Linear embed_tokens;  // [vocab, hidden], BF16 or F32 (rows are gathered)
  std::vector<DecoderLayer> layers;
  std::vector<float> norm;  // final RMSNorm [hidden]
  Linear lm_head;           // [vocab, hidden]; embed_tokens when tie_word_embeddings
  std::vector<MtpLayer> mtp;
  size_t bound_bytes = 0;  // bytes of all bound tensors (shared ones once)
  int64_t bound_tensors = 0;
  // The anonymous memory the matrices were copied into (BindOptions::memory kCopied), null
  // when they point into the checkpoint's mappings. Copies of a ModelWeights share it.
  std::shared_ptr<const uint8_t> copied_storage;
  size_t copied_bytes = 0;
  // Whether `p` lies inside copied_storage (false when nothing was copied).
  bool in_copy(const void* p) const {
    const auto* b = static_cast<const uint8_t*>(p);
    return copied_storage != nullptr && b >= copied_storage.get() &&
           b < copied_storage.get() + copied_bytes;
  }

  // Decoder layer `index` in the checkpoint's numbering: a main layer, or the block of
  // MTP module index - layers.size(). Precondition: index < layers.size() + mtp.size().
  const DecoderLayer& layer(int64_t index) const;
  // The bound layers with a DeepSeekMoE block, ascending: ModelConfig::moe_layers(), then
  // the MoE blocks of the loaded MTP modules (what expert parallelism shards).
  std::vector<int64_t> moe_layers() const;
};

// How much of the bound floating-point tensors is checked for NaN and Inf at load:
// none; sampled (every tensor under 1 MiB whole, larger ones in 256 evenly spaced
// 4 KiB windows, plus their FP8 block scales whole); or every value.
enum class WeightCheck { kNone, kSampled, kAll };
// "none" | "sampled" | "all"; nullopt for anything else.
std::optional<WeightCheck> parse_weight_check(std::string_view text);

// ok, or invalid_argument naming the tensor, its file, the first bad element found and
// its value class ("NaN", "Inf"), when a checked value of `tensor` is not finite.
// Integer and bool tensors always pass. E4M3 (FN) has NaN but no Inf.
Status check_finite(const TensorView& tensor, WeightCheck check);

// Where the bound matrices live. kMapped: in the checkpoint's file mappings (4 KiB page
// cache pages, at whatever offset the file puts them). kCopied: copied once at load into
// one anonymous allocation of transparent huge pages, every matrix starting on a 64-byte
// line (what the vector kernels stream fastest: see docs/development.md, Benchmarks); the
// mapped pages are dropped after the copy, so resident memory does not double.
enum class WeightMemory { kMapped, kCopied };
// "mapped" | "copied"; nullopt for anything else.
std::optional<WeightMemory> parse_weight_memory(std::string_view text);

// An anonymous allocation of at least `bytes` for weight matrices: from 2 MiB aligned to 2
// MiB with MADV_HUGEPAGE (best effort: without THP it still aligns), below that on a 64-byte
// line; null when the allocation fails.
std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes);
// MADV_DONTNEED over the whole pages inside [data, data + bytes) of a private file mapping
// (they read back from the file); the partial pages at the edges, which neighbouring
// tensors may share, are left alone.
void drop_whole_pages(const void* data, size_t bytes);

struct BindOptions {
  bool load_mtp = true;  // bind model.layers.<L..L+k-1>; when false they are ignored
  bool prefault = true;  // touch every page of the bound weights, with progress on stderr
  WeightCheck check = WeightCheck::kSampled;  // NaN/Inf in a bound tensor fails the load
  WeightMemory memory = WeightMemory::kCopied;
  // kCopied: whether routed expert `expert` of decoder layer `layer` (checkpoint numbering,
  // MTP blocks included) is copied too; null copies all. An expert-parallel rank copies its
  // own slots' experts: the others stay in the checkpoint mapping, untouched until a
  // placement switch brings them here (and then run from the mapping).
  std::function<bool(int64_t layer, int64_t expert)> copy_routed_expert;
  // Called with the share of the bound bytes prefaulted, in [0, 1], as it grows (and 1
  // at the end, also without prefault).
  std::function<void(double)> on_progress;
};

// The decoder layers with a DeepSeekMoE block that bind_weights binds: config.moe_layers(),
// then the MoE blocks of the MTP modules when `load_mtp` (what ModelWeights::moe_layers()
// returns, known before loading).
std::vector<int64_t> bound_moe_layers(const ModelConfig& config, bool load_mtp);

StatusOr<ModelWeights> bind_weights(const ModelConfig& config,
                                    const SafetensorsCheckpoint& checkpoint,
                                    const BindOptions& options = {});

// Calls `fn` for every matrix field of `weights`: the main model, its layers, then the MTP
// modules (a matrix an MTP module shares with the main model, such as its embedding, is
// visited once per field that holds it).
void for_each_linear(ModelWeights& weights, const std::function<void(Linear&)>& fn);

// config + checkpoint + weights of one model folder. Move-only; the weights point into
// the checkpoint's mappings, which moving does not relocate.
struct LoadedModel {
  std::string dir;
  ModelConfig config;
  SafetensorsCheckpoint checkpoint;
  ModelWeights weights;
};

StatusOr<LoadedModel> load_model(const std::string& dir, const BindOptions& options = {});

}  // namespace moeserve::model
