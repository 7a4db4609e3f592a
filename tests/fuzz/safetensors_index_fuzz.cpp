// model.safetensors.index.json (worker/model/safetensors.h): parse_safetensors_index on
// any bytes. An accepted index names each tensor once with a plain file name, and its
// shards are exactly the distinct files of the weight map, sorted.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_check.h"
#include "worker/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  moeserve::StatusOr<moeserve::model::SafetensorsIndex> index =
      moeserve::model::parse_safetensors_index(text, "model.safetensors.index.json");
  if (!index.ok()) {
    FUZZ_CHECK(index.status().message().starts_with("model.safetensors.index.json: "),
               index.status().message());
    return 0;
  }
  FUZZ_CHECK(!index->weight_map.empty() && !index->shards.empty(), "empty index accepted");
  std::set<std::string> tensors, files;
  for (const auto& [tensor, file] : index->weight_map) {
    FUZZ_CHECK(tensors.insert(tensor).second, "tensor listed twice: " + tensor);
    FUZZ_CHECK(file.find('/') == std::string::npos, "shard with a folder: " + file);
    files.insert(file);
  }
  FUZZ_CHECK(std::equal(files.begin(), files.end(), index->shards.begin(), index->shards.end()),
             "shards are not the distinct files of the weight map");
  return 0;
}
