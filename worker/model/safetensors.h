// Safetensors checkpoints, read through mmap and never copied.
//
// File format: an 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the byte after the header) plus an optional "__metadata__" string map, then the data.
//
// A SafetensorsCheckpoint is one model folder: either `model.safetensors`, or the shards
// named by `model.safetensors.index.json` ("weight_map": tensor -> shard file). Opening
// validates everything that can be checked without reading the data: header length
// within the file, JSON well-formed, known dtypes, shape x dtype size == data length,
// offsets ordered (begin <= end) and inside the file, no two tensors overlapping, every
// shard of the index present and holding the tensors the index assigns to it, no tensor
// in two shards. Errors name the file and the tensor.
//
// The checkpoint owns its mappings; TensorView::data points into them and stays valid
// for the checkpoint's lifetime (moving the checkpoint keeps the pointers valid). All
// const methods are safe to call from several threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "worker/model/dtype.h"

namespace moeserve::model {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; may be unaligned for odd headers
  size_t bytes = 0;
  std::string file;  // path of the file that holds it

  int64_t numel() const;
  // "[576, 7168]"
  std::string shape_string() const;
};

class SafetensorsCheckpoint {
 public:
  // Opens `<dir>/model.safetensors.index.json` when present, else `<dir>/model.safetensors`.
  static StatusOr<SafetensorsCheckpoint> open(const std::string& dir);
  // Opens one .safetensors file.
  static StatusOr<SafetensorsCheckpoint> open_file(const std::string& path);
  // Opens the shards named by an index file (paths resolved next to it).
  static StatusOr<SafetensorsCheckpoint> open_index(const std::string& index_path);

  SafetensorsCheckpoint(SafetensorsCheckpoint&&) noexcept;
  SafetensorsCheckpoint& operator=(SafetensorsCheckpoint&&) noexcept;
  ~SafetensorsCheckpoint();

  // nullptr when absent.
  const TensorView* find(std::string_view name) const;
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }
  // Sum of all tensors' bytes.
  size_t total_bytes() const;
  // The mapped files, in the order opened.
  std::vector<std::string> files() const;
  // What was opened: the index file, or the single .safetensors file.
  const std::string& source() const { return source_; }
  // "__metadata__" of every file merged (later files do not override earlier keys).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  SafetensorsCheckpoint();
  Status add_file(const std::string& path);

  std::vector<std::unique_ptr<Mapping>> mappings_;
  std::unordered_map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string source_;
};

// Parses a header (the JSON text) of a file of `file_bytes` bytes whose header is
// `header_bytes` long; offsets are checked against the file size. Views get data
// pointers relative to `data_start` (nullptr allowed for validation only). Exposed for
// tests and tools.
StatusOr<std::vector<TensorView>> parse_safetensors_header(
    std::string_view header_json, size_t header_bytes, size_t file_bytes, const uint8_t* data_start,
    const std::string& file, std::map<std::string, std::string>* metadata);

// Parses a whole safetensors file held in memory (length prefix, header, data): what
// opening a mapped file checks. Views point into `file_bytes`.
StatusOr<std::vector<TensorView>> parse_safetensors_file(
    std::span<const uint8_t> file_bytes, const std::string& file,
    std::map<std::string, std::string>* metadata);

// model.safetensors.index.json: which shard holds each tensor.
struct SafetensorsIndex {
  std::vector<std::pair<std::string, std::string>> weight_map;  // tensor, shard file name
  std::vector<std::string> shards;                              // distinct, sorted
};
// Parses an index file's text: weight_map an object of plain file names (no '/'), not
// empty. `index_path` names the file in errors. Pure.
StatusOr<SafetensorsIndex> parse_safetensors_index(std::string_view text,
                                                   const std::string& index_path);

// One tensor to write: `data` must hold exactly numel x dtype_size bytes.
struct TensorWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
};

// Writes a safetensors file as the reference implementation does: header padded with
// spaces to a multiple of 8 bytes, data contiguous, tensors ordered by element size
// (largest first) then name, so every tensor is aligned to its element size (F32 block
// scales can be read in place). Names must be unique.
Status write_safetensors(const std::string& path, const std::vector<TensorWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace moeserve::model
