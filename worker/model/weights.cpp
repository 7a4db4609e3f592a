#include "worker/model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>

#include "common/log.h"
#include "kernels/cpu/convert.h"

namespace moeserve::model {
namespace {

constexpr int64_t kBlock = 128;

std::string dims_string(std::initializer_list<int64_t> dims) {
  std::string out = "[";
  for (auto it = dims.begin(); it != dims.end(); ++it) {
    if (it != dims.begin()) out += ", ";
    out += std::to_string(*it);
  }
  return out + "]";
}

std::string dtypes_string(std::initializer_list<DType> dtypes) {
  std::string out;
  for (DType d : dtypes) {
    if (!out.empty()) out += ", ";
    out += dtype_name(d);
  }
  return out;
}

bool is_aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

// Reads one element of a F32 or BF16 tensor as float (unaligned-safe).
float load_float(DType dtype, const uint8_t* data, int64_t i) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, data + i * 4, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, data + i * 2, 2);
  return kernels::bf16_to_f32(bits);
}

// Binds tensors by name with a sticky first error, so the layer structure reads as a
// flat list of the checkpoint's names. Records every name it consumed.
class Binder {
 public:
  Binder(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint, std::string source)
      : config_(config), checkpoint_(checkpoint), source_(std::move(source)) {}

  // A matrix [rows, cols]; F8_E4M3 only with its block scales.
  Linear linear(const std::string& name, int64_t rows, int64_t cols, bool allow_fp8 = true) {
    Linear out;
    const TensorView* view =
        require(name, {rows, cols},
                allow_fp8 ? std::initializer_list<DType>{DType::kBF16, DType::kF32, DType::kF8E4M3}
                          : std::initializer_list<DType>{DType::kBF16, DType::kF32});
    if (view == nullptr) return out;
    out.name = name;
    out.dtype = view->dtype;
    out.data = view->data;
    out.rows = rows;
    out.cols = cols;
    if (view->dtype == DType::kF8E4M3) out.scale_inv = scales(*view, rows, cols);
    return out;
  }

  // Like linear(), but absent is fine: returns `fallback` then.
  Linear optional_linear(const std::string& name, int64_t rows, int64_t cols,
                         const Linear& fallback) {
    if (checkpoint_.find(name) == nullptr) return fallback;
    return linear(name, rows, cols, /*allow_fp8=*/false);
  }

  // A small F32 or BF16 vector, converted to float.
  std::vector<float> vector(const std::string& name, int64_t size) {
    const TensorView* view = require(name, {size}, {DType::kBF16, DType::kF32});
    if (view == nullptr) return {};
    std::vector<float> out(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) out[i] = load_float(view->dtype, view->data, i);
    return out;
  }

  const Status& status() const { return status_; }
  const std::set<std::string>& used() const { return used_; }

 private:
  const TensorView* require(const std::string& name, std::initializer_list<int64_t> shape,
                            std::initializer_list<DType> dtypes) {
    if (!status_.ok()) return nullptr;
    const TensorView* view = checkpoint_.find(name);
    if (view == nullptr) {
      fail(not_found_error(source_ + ": missing tensor " + name + " (expected " +
                           dims_string(shape) + " of " + dtypes_string(dtypes) + ")"));
      return nullptr;
    }
    used_.insert(name);
    if (std::find(dtypes.begin(), dtypes.end(), view->dtype) == dtypes.end()) {
      fail(invalid_argument_error(view->file + ": tensor " + name + ": dtype " +
                                  std::string(dtype_name(view->dtype)) + " not allowed here (" +
                                  dtypes_string(dtypes) + ")"));
      return nullptr;
    }
    if (!std::equal(view->shape.begin(), view->shape.end(), shape.begin(), shape.end())) {
      fail(invalid_argument_error(view->file + ": tensor " + name + ": shape " +
                                  view->shape_string() + ", expected " + dims_string(shape)));
      return nullptr;
    }
    if (view->dtype == DType::kF8E4M3 && !config_.quantization.fp8) {
      fail(invalid_argument_error(view->file + ": tensor " + name +
                                  " is F8_E4M3 but config.json has no quantization_config"));
      return nullptr;
    }
    return view;
  }

  const float* scales(const TensorView& weight, int64_t rows, int64_t cols) {
    const std::string name = weight.name + "_scale_inv";
    const TensorView* view = checkpoint_.find(name);
    const int64_t srows = (rows + kBlock - 1) / kBlock;
    const int64_t scols = (cols + kBlock - 1) / kBlock;
    if (view == nullptr) {
      fail(not_found_error(weight.file + ": tensor " + weight.name + " is F8_E4M3 but " + name +
                           " is missing (expected " + dims_string({srows, scols}) + " of F32)"));
      return nullptr;
    }
    if (require(name, {srows, scols}, {DType::kF32}) == nullptr) return nullptr;
    if (!is_aligned(view->data, alignof(float))) {
      fail(invalid_argument_error(view->file + ": tensor " + name +
                                  ": F32 data not 4-byte aligned in the file"));
      return nullptr;
    }
    return reinterpret_cast<const float*>(view->data);
  }

  void fail(Status status) {
    if (status_.ok()) status_ = std::move(status);
  }

  const ModelConfig& config_;
  const SafetensorsCheckpoint& checkpoint_;
  std::string source_;
  std::set<std::string> used_;
  Status status_;
};

Mlp bind_mlp(Binder& b, const std::string& prefix, int64_t hidden, int64_t intermediate) {
  Mlp mlp;
  mlp.gate_proj = b.linear(prefix + "gate_proj.weight", intermediate, hidden);
  mlp.up_proj = b.linear(prefix + "up_proj.weight", intermediate, hidden);
  mlp.down_proj = b.linear(prefix + "down_proj.weight", hidden, intermediate);
  return mlp;
}

Attention bind_attention(Binder& b, const ModelConfig& c, const std::string& prefix) {
  const int64_t heads = c.num_attention_heads;
  Attention a;
  if (c.has_q_lora()) {
    a.q_a_proj = b.linear(prefix + "q_a_proj.weight", c.q_lora_rank, c.hidden_size);
    a.q_a_layernorm = b.vector(prefix + "q_a_layernorm.weight", c.q_lora_rank);
    a.q_b_proj = b.linear(prefix + "q_b_proj.weight", heads * c.qk_head_dim(), c.q_lora_rank);
  } else {
    a.q_proj = b.linear(prefix + "q_proj.weight", heads * c.qk_head_dim(), c.hidden_size);
  }
  a.kv_a_proj_with_mqa = b.linear(prefix + "kv_a_proj_with_mqa.weight",
                                  c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size);
  a.kv_a_layernorm = b.vector(prefix + "kv_a_layernorm.weight", c.kv_lora_rank);
  a.kv_b_proj = b.linear(prefix + "kv_b_proj.weight", heads * (c.qk_nope_head_dim + c.v_head_dim),
                         c.kv_lora_rank);
  a.o_proj = b.linear(prefix + "o_proj.weight", c.hidden_size, heads * c.v_head_dim);
  return a;
}

DecoderLayer bind_layer(Binder& b, const ModelConfig& c, int64_t index) {
  const std::string prefix = "model.layers." + std::to_string(index) + ".";
  DecoderLayer layer;
  layer.index = index;
  layer.input_layernorm = b.vector(prefix + "input_layernorm.weight", c.hidden_size);
  layer.post_attention_layernorm =
      b.vector(prefix + "post_attention_layernorm.weight", c.hidden_size);
  layer.self_attn = bind_attention(b, c, prefix + "self_attn.");
  layer.is_moe = c.is_moe_layer(index);
  if (!layer.is_moe) {
    layer.mlp = bind_mlp(b, prefix + "mlp.", c.hidden_size, c.intermediate_size);
    return layer;
  }
  Moe& moe = layer.moe;
  moe.gate = b.linear(prefix + "mlp.gate.weight", c.n_routed_experts, c.hidden_size,
                      /*allow_fp8=*/false);
  if (c.topk_method == TopkMethod::kNoauxTc) {
    moe.e_score_correction_bias =
        b.vector(prefix + "mlp.gate.e_score_correction_bias", c.n_routed_experts);
  }
  moe.experts.reserve(static_cast<size_t>(c.n_routed_experts));
  for (int64_t e = 0; e < c.n_routed_experts && b.status().ok(); ++e) {
    moe.experts.push_back(bind_mlp(b, prefix + "mlp.experts." + std::to_string(e) + ".",
                                   c.hidden_size, c.moe_intermediate_size));
  }
  if (c.n_shared_experts > 0) {
    moe.shared_experts =
        bind_mlp(b, prefix + "mlp.shared_experts.", c.hidden_size, c.shared_intermediate_size());
  }
  return layer;
}

MtpLayer bind_mtp(Binder& b, const ModelConfig& c, int64_t index, const ModelWeights& main) {
  const std::string prefix = "model.layers." + std::to_string(index) + ".";
  MtpLayer mtp;
  mtp.embed_tokens = b.optional_linear(prefix + "embed_tokens.weight", c.vocab_size, c.hidden_size,
                                       main.embed_tokens);
  mtp.enorm = b.vector(prefix + "enorm.weight", c.hidden_size);
  mtp.hnorm = b.vector(prefix + "hnorm.weight", c.hidden_size);
  mtp.eh_proj = b.linear(prefix + "eh_proj.weight", c.hidden_size, 2 * c.hidden_size);
  mtp.shared_head_norm = b.vector(prefix + "shared_head.norm.weight", c.hidden_size);
  mtp.shared_head_head = b.optional_linear(prefix + "shared_head.head.weight", c.vocab_size,
                                           c.hidden_size, main.lm_head);
  mtp.block = bind_layer(b, c, index);
  return mtp;
}

// Layer number of "model.layers.<n>.*", or -1.
int64_t layer_of(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  int64_t n = 0;
  size_t i = kPrefix.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' ? n : -1;
}

bool ignorable(const ModelConfig& c, const BindOptions& options, const std::string& name) {
  static const std::string kInvFreq = ".rotary_emb.inv_freq";
  if (name.size() >= kInvFreq.size() &&
      name.compare(name.size() - kInvFreq.size(), kInvFreq.size(), kInvFreq) == 0) {
    return true;
  }
  if (c.tie_word_embeddings && name == "lm_head.weight") return true;
  const int64_t layer = layer_of(name);
  return !options.load_mtp && layer >= c.num_hidden_layers &&
         layer < c.num_hidden_layers + c.num_nextn_predict_layers;
}

Status check_unexpected(const ModelConfig& c, const BindOptions& options,
                        const SafetensorsCheckpoint& checkpoint,
                        const std::set<std::string>& used) {
  std::vector<const TensorView*> extra;
  for (const std::string& name : checkpoint.names()) {
    if (used.count(name) == 0 && !ignorable(c, options, name))
      extra.push_back(checkpoint.find(name));
  }
  if (extra.empty()) return ok_status();
  std::string message = extra[0]->file + ": unexpected tensor " + extra[0]->name;
  const size_t shown = std::min<size_t>(extra.size(), 5);
  for (size_t i = 1; i < shown; ++i) message += ", " + extra[i]->name;
  if (extra.size() > shown) message += " and " + std::to_string(extra.size() - shown) + " more";
  message += " (not part of a " + c.architecture_name + " with this config.json)";
  return invalid_argument_error(message);
}

// Progress of a pass over the bound tensors: on_progress with the share of bytes done,
// and a "loading weights" log line about every 10 %.
class LoadProgress {
 public:
  LoadProgress(std::string step, int64_t tensors_total, size_t bytes_total,
               const std::function<void(double)>& on_progress)
      : step_(std::move(step)),
        tensors_total_(tensors_total),
        bytes_total_(bytes_total),
        on_progress_(on_progress) {}

  void add(size_t bytes) {
    done_bytes_ += bytes;
    ++done_tensors_;
    if (on_progress_ && bytes_total_ > 0) {
      on_progress_(static_cast<double>(done_bytes_) / static_cast<double>(bytes_total_));
    }
    const int percent =
        bytes_total_ == 0 ? 100 : static_cast<int>(100.0 * done_bytes_ / bytes_total_);
    if (percent >= next_percent_) {
      log::info("loading weights", {{"step", step_},
                                    {"tensors", done_tensors_},
                                    {"tensors_total", tensors_total_},
                                    {"bytes", done_bytes_},
                                    {"bytes_total", bytes_total_},
                                    {"percent", percent}});
      next_percent_ = (percent / 10 + 1) * 10;
    }
  }

 private:
  std::string step_;
  int64_t tensors_total_;
  size_t bytes_total_;
  const std::function<void(double)>& on_progress_;
  size_t done_bytes_ = 0;
  int64_t done_tensors_ = 0;
  int next_percent_ = 10;
};

// Asks the kernel to read ahead, then touches every page so the first forward pass does
// not stall on page faults.
void prefault(const SafetensorsCheckpoint& checkpoint, const std::set<std::string>& used,
              size_t total_bytes, const std::function<void(double)>& on_progress) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  LoadProgress progress("prefault", static_cast<int64_t>(used.size()), total_bytes, on_progress);
  volatile uint8_t sink = 0;
  for (const std::string& name : used) {
    const TensorView* view = checkpoint.find(name);
    if (view->bytes > 0) {
      const uintptr_t begin = reinterpret_cast<uintptr_t>(view->data) / page * page;
      const uintptr_t end = reinterpret_cast<uintptr_t>(view->data) + view->bytes;
      madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
      uint8_t acc = 0;
      // The mapping starts on a page boundary, so `begin` is inside it.
      for (uintptr_t p = begin; p < end; p += page) acc ^= *reinterpret_cast<const uint8_t*>(p);
      sink = sink ^ acc;
    }
    progress.add(view->bytes);
  }
}

// Index of the first element of `bytes` (elements of `width` bytes) that `bad` flags,
// or -1.
template <typename Word, typename Bad>
int64_t first_bad(const uint8_t* data, size_t begin, size_t end, Bad bad) {
  for (size_t at = begin; at + sizeof(Word) <= end; at += sizeof(Word)) {
    Word w;
    std::memcpy(&w, data + at, sizeof w);  // views may be unaligned
    if (bad(w)) return static_cast<int64_t>(at / sizeof(Word));
  }
  return -1;
}

// First non-finite element in bytes [begin, end) of the tensor, and whether it is a NaN
// (else Inf); {-1, false} when all are finite or the dtype has no such values.
std::pair<int64_t, bool> scan_finite(const TensorView& t, size_t begin, size_t end) {
  int64_t at = -1;
  bool nan = true;
  auto check = [&](auto word, uint64_t exponent_mask, uint64_t mantissa_mask) {
    using Word = decltype(word);
    at = first_bad<Word>(t.data, begin, end, [&](Word w) {
      if ((w & exponent_mask) != exponent_mask) return false;
      nan = (w & mantissa_mask) != 0;
      return true;
    });
  };
  switch (t.dtype) {
    case DType::kF32: check(uint32_t{}, 0x7f800000u, 0x007fffffu); break;
    case DType::kBF16: check(uint16_t{}, 0x7f80u, 0x007fu); break;
    case DType::kF16: check(uint16_t{}, 0x7c00u, 0x03ffu); break;
    case DType::kF8E5M2: check(uint8_t{}, 0x7cu, 0x03u); break;
    case DType::kF8E4M3:  // FN: S.1111.111 is NaN, there is no Inf
      at = first_bad<uint8_t>(t.data, begin, end, [](uint8_t w) { return (w & 0x7f) == 0x7f; });
      break;
    default: break;
  }
  return {at, nan};
}

}  // namespace

std::optional<WeightCheck> parse_weight_check(std::string_view text) {
  if (text == "none") return WeightCheck::kNone;
  if (text == "sampled") return WeightCheck::kSampled;
  if (text == "all") return WeightCheck::kAll;
  return std::nullopt;
}

Status check_finite(const TensorView& tensor, WeightCheck check) {
  if (check == WeightCheck::kNone || tensor.bytes == 0) return ok_status();
  constexpr size_t kWindow = 4096;
  constexpr size_t kWindows = 256;
  const size_t width = dtype_size(tensor.dtype);
  std::vector<std::pair<size_t, size_t>> ranges;
  if (check == WeightCheck::kAll || tensor.bytes <= kWindow * kWindows) {
    ranges.emplace_back(0, tensor.bytes);
  } else {
    const size_t stride = tensor.bytes / kWindows;
    for (size_t i = 0; i < kWindows; ++i) {
      const size_t begin = i * stride / width * width;
      ranges.emplace_back(begin, std::min(tensor.bytes, begin + kWindow));
    }
  }
  for (const auto& [begin, end] : ranges) {
    const auto [element, nan] = scan_finite(tensor, begin, end);
    if (element < 0) continue;
    return invalid_argument_error(tensor.file + ": tensor " + tensor.name + " " +
                                  tensor.shape_string() + " holds " + (nan ? "NaN" : "Inf") +
                                  " at element " + std::to_string(element) +
                                  " (the checkpoint is corrupt)");
  }
  return ok_status();
}

size_t Linear::bytes() const {
  size_t n = static_cast<size_t>(rows * cols) * dtype_size(dtype);
  if (scale_inv != nullptr) n += static_cast<size_t>(scale_rows() * scale_cols()) * sizeof(float);
  return n;
}

const DecoderLayer& ModelWeights::layer(int64_t index) const {
  const int64_t main = static_cast<int64_t>(layers.size());
  return index < main ? layers[index] : mtp[index - main].block;
}

std::vector<int64_t> ModelWeights::moe_layers() const {
  std::vector<int64_t> out;
  for (const DecoderLayer& l : layers) {
    if (l.is_moe) out.push_back(l.index);
  }
  for (const MtpLayer& m : mtp) {
    if (m.block.is_moe) out.push_back(m.block.index);
  }
  return out;
}

namespace {

void for_each_mlp_linear(Mlp& mlp, const std::function<void(Linear&)>& fn) {
  fn(mlp.gate_proj);
  fn(mlp.up_proj);
  fn(mlp.down_proj);
}

void for_each_layer_linear(DecoderLayer& layer, const std::function<void(Linear&)>& fn) {
  Attention& a = layer.self_attn;
  for (Linear* l :
       {&a.q_a_proj, &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa, &a.kv_b_proj, &a.o_proj})
    fn(*l);
  for_each_mlp_linear(layer.mlp, fn);
  fn(layer.moe.gate);
  for (Mlp& e : layer.moe.experts) for_each_mlp_linear(e, fn);
  for_each_mlp_linear(layer.moe.shared_experts, fn);
}

constexpr size_t kHugePageBytes = size_t{2} << 20;
constexpr size_t kLineBytes = 64;

// The data of the routed experts `copy` leaves out (none when it is null).
std::set<const uint8_t*> experts_left_mapped(ModelWeights& w,
                                             const std::function<bool(int64_t, int64_t)>& copy) {
  std::set<const uint8_t*> out;
  if (!copy) return out;
  auto add = [&](DecoderLayer& layer) {
    for (int64_t e = 0; e < static_cast<int64_t>(layer.moe.experts.size()); ++e) {
      if (copy(layer.index, e)) continue;
      for_each_mlp_linear(layer.moe.experts[e], [&](Linear& l) {
        if (!l.empty()) out.insert(l.data);
      });
    }
  };
  for (DecoderLayer& layer : w.layers) add(layer);
  for (MtpLayer& m : w.mtp) add(m.block);
  return out;
}

// Copies every distinct matrix (by data pointer) but those in `left_mapped` into one
// huge-page allocation, each on a 64-byte line, repoints the Linears, and drops the mapped
// source pages.
Status copy_to_anonymous_memory(ModelWeights& w, const std::set<const uint8_t*>& left_mapped,
                                const std::function<void(double)>& on_progress) {
  struct Placed {
    size_t offset;  // in the copy
    size_t bytes;
  };
  std::map<const uint8_t*, Placed> placed;  // by source data
  size_t total = 0;                         // with each matrix padded to a line
  size_t data_bytes = 0;                    // without
  for_each_linear(w, [&](Linear& l) {
    if (l.empty() || placed.count(l.data) != 0 || left_mapped.count(l.data) != 0) return;
    const size_t bytes = static_cast<size_t>(l.rows * l.cols) * dtype_size(l.dtype);
    placed[l.data] = {total, bytes};
    data_bytes += bytes;
    total += (bytes + kLineBytes - 1) / kLineBytes * kLineBytes;
  });
  if (total == 0) return ok_status();
  std::shared_ptr<uint8_t> storage = allocate_weight_memory(total);
  if (storage == nullptr) {
    return resource_exhausted_error("copying the weights into memory: cannot allocate " +
                                    std::to_string(total) + " bytes");
  }
  LoadProgress progress("copy", static_cast<int64_t>(placed.size()), data_bytes, on_progress);
  for (const auto& [source, where] : placed) {
    std::memcpy(storage.get() + where.offset, source, where.bytes);
    drop_whole_pages(source, where.bytes);
    progress.add(where.bytes);
  }
  for_each_linear(w, [&](Linear& l) {
    if (!l.empty() && left_mapped.count(l.data) == 0) {
      l.data = storage.get() + placed.at(l.data).offset;
    }
  });
  w.copied_storage = storage;
  w.copied_bytes = total;
  return ok_status();
}

}  // namespace

void for_each_linear(ModelWeights& w, const std::function<void(Linear&)>& fn) {
  fn(w.embed_tokens);
  fn(w.lm_head);
  for (DecoderLayer& layer : w.layers) for_each_layer_linear(layer, fn);
  for (MtpLayer& m : w.mtp) {
    fn(m.embed_tokens);
    fn(m.eh_proj);
    fn(m.shared_head_head);
    for_each_layer_linear(m.block, fn);
  }
}

std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes) {
  const size_t align = bytes >= kHugePageBytes ? kHugePageBytes : kLineBytes;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* raw = std::aligned_alloc(align, rounded == 0 ? align : rounded);
  if (raw == nullptr) return nullptr;
  if (align == kHugePageBytes) madvise(raw, rounded, MADV_HUGEPAGE);  // best effort
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(raw), [](uint8_t* p) { std::free(p); });
}

void drop_whole_pages(const void* data, size_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::vector<int64_t> bound_moe_layers(const ModelConfig& config, bool load_mtp) {
  std::vector<int64_t> out = config.moe_layers();
  if (load_mtp) {
    for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k) {
      const int64_t index = config.num_hidden_layers + k;
      if (config.is_moe_layer(index)) out.push_back(index);
    }
  }
  return out;
}

std::optional<WeightMemory> parse_weight_memory(std::string_view text) {
  if (text == "mapped") return WeightMemory::kMapped;
  if (text == "copied") return WeightMemory::kCopied;
  return std::nullopt;
}

StatusOr<ModelWeights> bind_weights(const ModelConfig& config,
                                    const SafetensorsCheckpoint& checkpoint,
                                    const BindOptions& options) {
  Binder b(config, checkpoint, checkpoint.source());

  ModelWeights w;
  w.embed_tokens = b.linear("model.embed_tokens.weight", config.vocab_size, config.hidden_size,
                            /*allow_fp8=*/false);
  w.norm = b.vector("model.norm.weight", config.hidden_size);
  w.lm_head = config.tie_word_embeddings
                  ? w.embed_tokens
                  : b.linear("lm_head.weight", config.vocab_size, config.hidden_size,
                             /*allow_fp8=*/false);
  for (int64_t i = 0; i < config.num_hidden_layers && b.status().ok(); ++i) {
    w.layers.push_back(bind_layer(b, config, i));
  }
  if (options.load_mtp) {
    for (int64_t k = 0; k < config.num_nextn_predict_layers && b.status().ok(); ++k) {
      w.mtp.push_back(bind_mtp(b, config, config.num_hidden_layers + k, w));
    }
  }
  MOESERVE_RETURN_IF_ERROR(b.status());
  MOESERVE_RETURN_IF_ERROR(check_unexpected(config, options, checkpoint, b.used()));

  for (const std::string& name : b.used()) {
    const TensorView* tensor = checkpoint.find(name);
    // FP8 block scales are small and multiply whole blocks: always checked whole.
    const bool is_scale = name.ends_with("_scale_inv");
    MOESERVE_RETURN_IF_ERROR(check_finite(*tensor, is_scale && options.check != WeightCheck::kNone
                                                       ? WeightCheck::kAll
                                                       : options.check));
    w.bound_bytes += tensor->bytes;
  }
  w.bound_tensors = static_cast<int64_t>(b.used().size());
  if (options.memory == WeightMemory::kCopied) {
    MOESERVE_RETURN_IF_ERROR(copy_to_anonymous_memory(
        w, experts_left_mapped(w, options.copy_routed_expert), options.on_progress));
  } else if (options.prefault) {
    prefault(checkpoint, b.used(), w.bound_bytes, options.on_progress);
  }
  if (options.on_progress) options.on_progress(1.0);
  return w;
}

StatusOr<LoadedModel> load_model(const std::string& dir, const BindOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(ModelConfig config, load_config(dir));
  MOESERVE_ASSIGN_OR_RETURN(SafetensorsCheckpoint checkpoint, SafetensorsCheckpoint::open(dir));
  log::info("checkpoint opened", {{"dir", dir},
                                  {"architecture", config.architecture_name},
                                  {"files", static_cast<int64_t>(checkpoint.files().size())},
                                  {"tensors", static_cast<int64_t>(checkpoint.size())},
                                  {"bytes", checkpoint.total_bytes()}});
  MOESERVE_ASSIGN_OR_RETURN(ModelWeights weights, bind_weights(config, checkpoint, options));
  log::info("weights bound", {{"tensors", weights.bound_tensors},
                              {"bytes", weights.bound_bytes},
                              {"layers", config.num_hidden_layers},
                              {"mtp_layers", static_cast<int64_t>(weights.mtp.size())},
                              {"memory", weights.copied_storage ? "copied" : "mapped"},
                              {"copied_bytes", weights.copied_bytes}});
  return LoadedModel{dir, std::move(config), std::move(checkpoint), std::move(weights)};
}

}  // namespace moeserve::model
