// A safetensors file in memory (worker/model/safetensors.h): parse_safetensors_file on
// any bytes, as opening a mapped file does. Every accepted tensor lies inside the data
// section, its byte count is exactly its shape times its dtype size, its dimensions are
// non-negative, and no two non-empty tensors overlap.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "worker/model/dtype.h"
#include "worker/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using moeserve::model::TensorView;
  std::map<std::string, std::string> metadata;
  moeserve::StatusOr<std::vector<TensorView>> views = moeserve::model::parse_safetensors_file(
      std::span<const uint8_t>(data, size), "model.safetensors", &metadata);
  if (!views.ok()) {
    FUZZ_CHECK(views.status().message().starts_with("model.safetensors: "),
               views.status().message());
    return 0;
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | data[i];
  const uint8_t* data_start = data + 8 + header_bytes;
  const uint8_t* end = data + size;
  std::vector<std::pair<const uint8_t*, size_t>> spans;
  for (const TensorView& view : *views) {
    // The exact element count: 0 with any zero dimension, else a product that saturates
    // past 2^64 (no file holds that many bytes).
    unsigned __int128 numel = 1;
    bool zero = false;
    for (int64_t d : view.shape) {
      FUZZ_CHECK(d >= 0, view.name + ": negative dimension");
      zero = zero || d == 0;
      if (numel <= (static_cast<unsigned __int128>(1) << 64)) numel *= static_cast<uint64_t>(d);
    }
    if (zero) numel = 0;
    FUZZ_CHECK(numel * moeserve::model::dtype_size(view.dtype) == view.bytes,
               view.name + ": bytes " + std::to_string(view.bytes) + " do not match shape " +
                   view.shape_string());
    FUZZ_CHECK(view.numel() >= 0, view.name + ": numel");
    FUZZ_CHECK(view.data >= data_start && view.data <= end &&
                   view.bytes <= static_cast<size_t>(end - view.data),
               view.name + ": outside the data section");
    if (view.bytes > 0) spans.emplace_back(view.data, view.bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    FUZZ_CHECK(spans[i - 1].first + spans[i - 1].second <= spans[i].first, "tensors overlap");
  }
  return 0;
}
