#include "worker/engine/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "worker/engine/linear.h"

namespace moeserve::engine {
namespace {

int64_t element_bytes(kernels::WeightType type) {
  switch (type) {
    case kernels::WeightType::kF32: return 4;
    case kernels::WeightType::kBF16: return 2;
    case kernels::WeightType::kFP8E4M3: return 1;
  }
  return 4;
}

int64_t ceil_blocks(int64_t n) { return (n + kernels::kFp8BlockSize - 1) / kernels::kFp8BlockSize; }

// Whether rows [first, first + count) of `w` form a matrix whose 128-row scale blocks
// are whole source blocks: always for F32/BF16; for FP8 when the slice starts on a block
// edge or lies inside one block.
bool slice_keeps_scales(const kernels::WeightView& w, int64_t first, int64_t count) {
  if (w.type != kernels::WeightType::kFP8E4M3) return true;
  const int64_t offset = first % kernels::kFp8BlockSize;
  return offset == 0 || offset + count <= kernels::kFp8BlockSize;
}

// Rows [first, first + count) of `w` as a view into the same data. For FP8 the caller
// guarantees slice_keeps_scales.
kernels::WeightView row_slice(const kernels::WeightView& w, int64_t first, int64_t count) {
  kernels::WeightView slice = w;
  slice.rows = count;
  slice.data = static_cast<const uint8_t*>(w.data) + first * w.cols * element_bytes(w.type);
  if (w.type == kernels::WeightType::kFP8E4M3) {
    slice.scale_inv = w.scale_inv + (first / kernels::kFp8BlockSize) * ceil_blocks(w.cols);
  }
  return slice;
}

// Rows [first, first + count) of `w` dequantized into a float32 matrix, transposed or not.
kernels::WeightView float_copy(const kernels::WeightView& w, int64_t first, int64_t count,
                               bool transpose, std::vector<uint8_t>& storage) {
  storage.resize(count * w.cols * sizeof(float));
  float* out = reinterpret_cast<float*>(storage.data());
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < count; ++r) {
    kernels::dequantize_row(w, first + r, row.data());
    for (int64_t c = 0; c < w.cols; ++c) {
      (transpose ? out[c * count + r] : out[r * w.cols + c]) = row[c];
    }
  }
  return kernels::WeightView{kernels::WeightType::kF32, out, nullptr, transpose ? w.cols : count,
                             transpose ? count : w.cols};
}

// `bytes` of `storage` starting on a 64-byte line (the vector kernels take their fastest
// paths for line-aligned weights); `storage` must not be resized while the result is used.
uint8_t* line_aligned(std::vector<uint8_t>& storage, int64_t bytes) {
  storage.resize(static_cast<size_t>(bytes + 63));
  const auto address = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + (64 - address % 64) % 64;
}

// Rows [first, first + count) of `w`, transposed, in the stored dtype, on a 64-byte line.
// For FP8 the caller guarantees slice_keeps_scales (the slice's row blocks become the
// copy's column blocks).
kernels::WeightView transposed_copy(const kernels::WeightView& w, int64_t first, int64_t count,
                                    std::vector<uint8_t>& storage,
                                    std::vector<uint8_t>& scale_storage) {
  const int64_t bytes = element_bytes(w.type);
  uint8_t* out = line_aligned(storage, count * w.cols * bytes);
  const uint8_t* src = static_cast<const uint8_t*>(w.data) + first * w.cols * bytes;
  for (int64_t r = 0; r < count; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) {
      std::memcpy(out + (c * count + r) * bytes, src + (r * w.cols + c) * bytes, bytes);
    }
  }
  kernels::WeightView view{w.type, out, nullptr, w.cols, count};
  if (w.type == kernels::WeightType::kFP8E4M3) {
    const int64_t src_cols = ceil_blocks(w.cols);
    const int64_t rows_t = ceil_blocks(w.cols), cols_t = ceil_blocks(count);
    scale_storage.resize(rows_t * cols_t * sizeof(float));
    float* scales = reinterpret_cast<float*>(scale_storage.data());
    for (int64_t i = 0; i < rows_t; ++i) {
      for (int64_t j = 0; j < cols_t; ++j) {
        scales[i * cols_t + j] = w.scale_inv[(first / kernels::kFp8BlockSize + j) * src_cols + i];
      }
    }
    view.scale_inv = scales;
  }
  return view;
}

}  // namespace

MlaShape mla_shape(const model::ModelConfig& config, const kernels::RopeTable& rope) {
  MlaShape s;
  s.heads = config.num_attention_heads;
  s.hidden = config.hidden_size;
  s.q_lora_rank = config.q_lora_rank;
  s.kv_lora_rank = config.kv_lora_rank;
  s.nope = config.qk_nope_head_dim;
  s.rope = config.qk_rope_head_dim;
  s.v = config.v_head_dim;
  s.eps = static_cast<float>(config.rms_norm_eps);
  s.softmax_scale = static_cast<float>(std::pow(static_cast<double>(config.qk_head_dim()), -0.5) *
                                       rope.attention_scale_multiplier());
  return s;
}

MlaWeights bind_mla(const model::Attention& a, const MlaShape& shape) {
  MlaWeights w;
  if (shape.q_lora_rank > 0) {
    w.q_a = to_view(a.q_a_proj);
    w.q_a_norm = a.q_a_layernorm.data();
    w.q_b = to_view(a.q_b_proj);
  } else {
    w.q = to_view(a.q_proj);
  }
  w.kv_a = to_view(a.kv_a_proj_with_mqa);
  w.kv_a_norm = a.kv_a_layernorm.data();
  w.kv_b = to_view(a.kv_b_proj);
  w.o = to_view(a.o_proj);

  const int64_t per_head = shape.nope + shape.v;
  // Three buffers per head, sized up front so that the views into them stay valid: the
  // k_nope copy, its FP8 scales, and the float copy of the v rows when one is needed.
  w.storage.resize(3 * shape.heads);
  for (int64_t h = 0; h < shape.heads; ++h) {
    std::vector<uint8_t>* buffers = w.storage.data() + 3 * h;
    const int64_t k_first = h * per_head, v_first = h * per_head + shape.nope;
    w.uk_t.push_back(slice_keeps_scales(w.kv_b, k_first, shape.nope)
                         ? transposed_copy(w.kv_b, k_first, shape.nope, buffers[0], buffers[1])
                         : float_copy(w.kv_b, k_first, shape.nope, true, buffers[0]));
    w.uv.push_back(slice_keeps_scales(w.kv_b, v_first, shape.v)
                       ? row_slice(w.kv_b, v_first, shape.v)
                       : float_copy(w.kv_b, v_first, shape.v, false, buffers[2]));
  }
  return w;
}

MlaAttention::MlaAttention(const MlaShape& shape, const kernels::RopeTable* rope,
                           kernels::ThreadPool* pool)
    : shape_(shape), rope_(rope), pool_(pool) {}

void MlaAttention::project_q(const MlaWeights& w, int64_t tokens) {
  if (shape_.q_lora_rank > 0) {
    for (int64_t t = 0; t < tokens; ++t) {
      float* row = q_a_.data() + t * shape_.q_lora_rank;
      kernels::rms_norm(row, w.q_a_norm, shape_.q_lora_rank, shape_.eps, row);
    }
    kernels::matmul(w.q_b, q_a_.data(), tokens, q_.data(), pool_);
  }
}

void MlaAttention::project_inputs(const MlaWeights& w, const float* x, int64_t tokens) {
  const int64_t qk = shape_.nope + shape_.rope;
  q_.resize(tokens * shape_.heads * qk);
  kv_a_.resize(tokens * (shape_.kv_lora_rank + shape_.rope));
  kernels::MatmulTask projections[2] = {{w.q, x, tokens, q_.data()},
                                        {w.kv_a, x, tokens, kv_a_.data()}};
  if (shape_.q_lora_rank > 0) {
    q_a_.resize(tokens * shape_.q_lora_rank);
    projections[0] = {w.q_a, x, tokens, q_a_.data()};
  }
  kernels::matmul_all(projections, pool_);
}

void MlaAttention::write_cache(const MlaWeights& w, int64_t layer,
                               const std::vector<AttentionSpan>& spans, KvCache& cache) {
  const int64_t latent = shape_.kv_lora_rank, qk = shape_.nope + shape_.rope;
  for (const AttentionSpan& span : spans) {
    for (int64_t i = 0; i < span.count; ++i) {
      const int64_t t = span.first + i, position = span.start_position + i;
      const float* src = kv_a_.data() + t * (latent + shape_.rope);
      float* entry = cache.entry(*span.kv, layer, position);
      kernels::rms_norm(src, w.kv_a_norm, latent, shape_.eps, entry);
      std::copy_n(src + latent, shape_.rope, entry + latent);
      rope_->apply(entry + latent, position);
      for (int64_t h = 0; h < shape_.heads; ++h) {
        rope_->apply(q_.data() + (t * shape_.heads + h) * qk + shape_.nope, position);
      }
    }
  }
}

bool MlaAttention::use_absorbed(const AttentionSpan& span, AttentionPath path) const {
  if (path != AttentionPath::kAuto) return path == AttentionPath::kAbsorbed;
  const int64_t n = span.count, len = span.start_position + span.count;
  const int64_t latent = shape_.kv_lora_rank;
  const int64_t absorbed =
      n * (shape_.nope * latent + len * (2 * latent + shape_.rope) + latent * shape_.v);
  const int64_t expanded =
      len * (shape_.nope + shape_.v) * latent + n * len * (shape_.nope + shape_.rope + shape_.v);
  return absorbed <= expanded;
}

void MlaAttention::attend_expanded(const MlaWeights& w, int64_t layer, const AttentionSpan& span,
                                   KvCache& cache) {
  const int64_t latent = shape_.kv_lora_rank, qk = shape_.nope + shape_.rope;
  const int64_t per_head = shape_.nope + shape_.v, heads = shape_.heads;
  const int64_t len = span.start_position + span.count;
  latents_.resize(len * latent);
  for (int64_t j = 0; j < len; ++j) {
    std::copy_n(cache.entry(*span.kv, layer, j), latent, latents_.data() + j * latent);
  }
  kv_.resize(len * heads * per_head);
  kernels::matmul(w.kv_b, latents_.data(), len, kv_.data(), pool_);
  // Queries in tiles of kQueryTile against each head's rows, so every key and value row
  // is read once per tile (kernels::attention_scores/_values), not once per query. A
  // tile scores the rows its last query sees; the extra ones of its earlier queries are
  // masked out after the softmax.
  constexpr int64_t kQueryTile = 8;
  rows_.resize(len);  // the rope keys, shared by every head
  for (int64_t j = 0; j < len; ++j) rows_[j] = cache.entry(*span.kv, layer, j) + latent;
  const float* const* rope_rows = rows_.data();
  pool_->parallel_for_balanced(heads, [&](int64_t begin, int64_t end) {
    // Per thread, so scratch grows with the context and the threads, not the heads.
    thread_local std::vector<const float*> k_rows, v_rows;
    thread_local std::vector<float> tile_scores;  // [2][kQueryTile, len]: nope, rope
    k_rows.resize(len);
    v_rows.resize(len);
    tile_scores.resize(2 * kQueryTile * len);
    float* scores = tile_scores.data();
    float* rope_scores = scores + kQueryTile * len;
    for (int64_t h = begin; h < end; ++h) {
      for (int64_t j = 0; j < len; ++j) {
        k_rows[j] = kv_.data() + (j * heads + h) * per_head;
        v_rows[j] = k_rows[j] + shape_.nope;
      }
      for (int64_t i0 = 0; i0 < span.count; i0 += kQueryTile) {
        const int64_t tile = std::min(kQueryTile, span.count - i0);
        const int64_t t0 = span.first + i0;
        const int64_t seen = span.start_position + i0 + tile;  // by the tile's last query
        const float* q = q_.data() + (t0 * heads + h) * qk;
        kernels::attention_scores(q, heads * qk, tile, k_rows.data(), seen, shape_.nope,
                                  shape_.softmax_scale, scores, len);
        kernels::attention_scores(q + shape_.nope, heads * qk, tile, rope_rows, seen, shape_.rope,
                                  shape_.softmax_scale, rope_scores, len);
        for (int64_t i = 0; i < tile; ++i) {
          float* row = scores + i * len;
          const int64_t visible = span.start_position + i0 + i + 1;
          kernels::add(row, rope_scores + i * len, visible);
          kernels::softmax(row, visible);
          std::fill(row + visible, row + seen, 0.0f);
        }
        kernels::attention_values(scores, len, tile, v_rows.data(), seen, shape_.v,
                                  heads_out_.data() + (t0 * heads + h) * shape_.v,
                                  heads * shape_.v);
      }
    }
  });
}

void MlaAttention::attend_absorbed(const MlaWeights& w, int64_t layer,
                                   const std::vector<AttentionSpan>& spans, KvCache& cache) {
  const int64_t latent = shape_.kv_lora_rank, qk = shape_.nope + shape_.rope;
  const int64_t entry_dim = latent + shape_.rope, heads = shape_.heads;
  int64_t n = 0, max_len = 0;
  for (const AttentionSpan& s : spans) {
    n += s.count;
    max_len = std::max(max_len, s.start_position + s.count);
  }
  head_in_.resize(heads * n * shape_.nope);
  query_.resize(heads * n * entry_dim);
  o_lat_.resize(heads * n * latent);
  head_v_.resize(heads * n * shape_.v);
  scores_.resize(heads * max_len);
  // Every head of a span's tokens reads the same cache entries: gather their addresses
  // once, and let each thread attend with all of its heads at once, so an entry is read
  // once per tile of heads (kernels::attention_scores/_values), not once per head.
  const KvCache& entries = cache;
  rows_.clear();
  for (const AttentionSpan& s : spans) {
    for (int64_t j = 0; j < s.start_position + s.count; ++j) {
      rows_.push_back(entries.entry(*s.kv, layer, j));
    }
  }
  // Heads are independent from the absorption to the output, so each thread takes whole
  // heads: one pool dispatch per layer, and each head's small matmuls run serially. The
  // static split keeps each thread's heads together (a tile of up to 8 heads shares every
  // row load; balanced chunks of 2 heads would load each row 4x as often).
  pool_->parallel_for(heads, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      // Head-major query: q_lat = W_uk^T q_nope next to the rope part, one vector per
      // token that a cache entry [latent | rope] dots with directly.
      float* head_in = head_in_.data() + h * n * shape_.nope;
      float* query = query_.data() + h * n * entry_dim;
      float* o_lat = o_lat_.data() + h * n * latent;
      int64_t a = 0;
      for (const AttentionSpan& s : spans) {
        for (int64_t i = 0; i < s.count; ++i, ++a) {
          const float* q = q_.data() + ((s.first + i) * heads + h) * qk;
          std::copy_n(q, shape_.nope, head_in + a * shape_.nope);
          std::copy_n(q + shape_.nope, shape_.rope, query + a * entry_dim + latent);
        }
      }
      kernels::matmul(w.uk_t[h], head_in, n, o_lat, nullptr);  // o_lat holds q_lat for now
      for (a = 0; a < n; ++a) std::copy_n(o_lat + a * latent, latent, query + a * entry_dim);
    }

    const int64_t count = end - begin;
    float* scores = scores_.data() + begin * max_len;  // [count heads, max_len]
    const float* const* span_rows = rows_.data();
    int64_t a = 0;
    for (const AttentionSpan& s : spans) {
      for (int64_t i = 0; i < s.count; ++i, ++a) {
        const int64_t visible = s.start_position + i + 1;
        kernels::attention_scores(query_.data() + (begin * n + a) * entry_dim, n * entry_dim, count,
                                  span_rows, visible, entry_dim, shape_.softmax_scale, scores,
                                  max_len);
        for (int64_t h = 0; h < count; ++h) kernels::softmax(scores + h * max_len, visible);
        kernels::attention_values(scores, max_len, count, span_rows, visible, latent,
                                  o_lat_.data() + (begin * n + a) * latent, n * latent);
      }
      span_rows += s.start_position + s.count;
    }

    for (int64_t h = begin; h < end; ++h) {
      float* o_lat = o_lat_.data() + h * n * latent;
      float* v = head_v_.data() + h * n * shape_.v;
      kernels::matmul(w.uv[h], o_lat, n, v, nullptr);
      a = 0;
      for (const AttentionSpan& s : spans) {
        for (int64_t i = 0; i < s.count; ++i, ++a) {
          std::copy_n(v + a * shape_.v, shape_.v,
                      heads_out_.data() + ((s.first + i) * heads + h) * shape_.v);
        }
      }
    }
  });
}

void MlaAttention::forward(const MlaWeights& w, int64_t layer, const float* x, int64_t tokens,
                           const std::vector<AttentionSpan>& spans, KvCache& cache,
                           AttentionPath path, float* out) {
  project_inputs(w, x, tokens);
  project_q(w, tokens);
  write_cache(w, layer, spans, cache);
  heads_out_.resize(tokens * shape_.heads * shape_.v);
  std::vector<AttentionSpan> absorbed;
  for (const AttentionSpan& span : spans) {
    if (use_absorbed(span, path)) {
      absorbed.push_back(span);
    } else {
      attend_expanded(w, layer, span, cache);
    }
  }
  if (!absorbed.empty()) attend_absorbed(w, layer, absorbed, cache);
  kernels::matmul(w.o, heads_out_.data(), tokens, out, pool_);
}

}  // namespace moeserve::engine
