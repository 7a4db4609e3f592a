#include "worker/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file.h"

namespace moeserve::model {
namespace {

using nlohmann::json;

constexpr size_t kLengthPrefixBytes = 8;
// The reference implementation refuses headers over 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string errno_text() { return std::strerror(errno); }

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

Status check_length_prefix_fits(size_t file_bytes, const std::string& file) {
  if (file_bytes >= kLengthPrefixBytes) return ok_status();
  return invalid_argument_error(file + ": file of " + std::to_string(file_bytes) +
                                " bytes is too small for a safetensors header length");
}

StatusOr<TensorView> parse_entry(const std::string& name, const json& entry, size_t data_bytes,
                                 const uint8_t* data_start, const std::string& file) {
  const std::string where = file + ": tensor " + name + ": ";
  if (!entry.is_object()) return invalid_argument_error(where + "header entry is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return invalid_argument_error(where + "missing or non-string dtype");
  }
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return invalid_argument_error(where + "missing or non-list shape");
  }
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return invalid_argument_error(where + "data_offsets must be two non-negative integers");
  }
  TensorView view;
  view.name = name;
  view.file = file;
  StatusOr<DType> dtype = parse_dtype(dtype_it->get<std::string>());
  if (!dtype.ok()) return dtype.status().with_context(file + ": tensor " + name);
  view.dtype = *dtype;
  uint64_t numel = 1;
  for (const json& dim : *shape_it) {
    if (!dim.is_number_unsigned()) {
      return invalid_argument_error(where + "shape must hold non-negative integers");
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d != 0 && numel > (uint64_t{1} << 62) / d) {
      return invalid_argument_error(where + "shape too large");
    }
    numel *= d;
    view.shape.push_back(static_cast<int64_t>(d));
  }
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  const uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end) {
    return invalid_argument_error(where + "data_offsets [" + std::to_string(begin) + ", " +
                                  std::to_string(end) + "] are not ordered");
  }
  if (end > data_bytes) {
    return invalid_argument_error(where + "truncated file: data ends at byte " +
                                  std::to_string(end) + " of the data section, which has only " +
                                  std::to_string(data_bytes) + " bytes");
  }
  const uint64_t expected = numel * dtype_size(view.dtype);
  if (end - begin != expected) {
    return invalid_argument_error(where + "data_offsets span " + std::to_string(end - begin) +
                                  " bytes but shape " + view.shape_string() + " of " +
                                  std::string(dtype_name(view.dtype)) + " needs " +
                                  std::to_string(expected));
  }
  view.data = data_start == nullptr ? nullptr : data_start + begin;
  view.bytes = static_cast<size_t>(end - begin);
  return view;
}

Status check_no_overlap(std::vector<std::pair<uint64_t, const TensorView*>> spans,
                        const std::string& file) {
  std::sort(spans.begin(), spans.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < spans.size(); ++i) {
    const auto& [prev_begin, prev] = spans[i - 1];
    const auto& [begin, cur] = spans[i];
    if (begin < prev_begin + prev->bytes && cur->bytes > 0 && prev->bytes > 0) {
      return invalid_argument_error(file + ": tensors " + prev->name + " and " + cur->name +
                                    " overlap in the data section");
    }
  }
  return ok_status();
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

StatusOr<std::vector<TensorView>> parse_safetensors_file(
    std::span<const uint8_t> file_bytes, const std::string& file,
    std::map<std::string, std::string>* metadata) {
  MOESERVE_RETURN_IF_ERROR(check_length_prefix_fits(file_bytes.size(), file));
  const uint64_t header_bytes = read_le64(file_bytes.data());
  if (header_bytes > file_bytes.size() - kLengthPrefixBytes || header_bytes > kMaxHeaderBytes) {
    return invalid_argument_error(file + ": header length " + std::to_string(header_bytes) +
                                  " goes beyond the file size " +
                                  std::to_string(file_bytes.size()));
  }
  const uint8_t* header_start = file_bytes.data() + kLengthPrefixBytes;
  const std::string_view header_json(reinterpret_cast<const char*>(header_start), header_bytes);
  return parse_safetensors_header(header_json, header_bytes, file_bytes.size(),
                                  header_start + header_bytes, file, metadata);
}

StatusOr<std::vector<TensorView>> parse_safetensors_header(
    std::string_view header_json, size_t header_bytes, size_t file_bytes, const uint8_t* data_start,
    const std::string& file, std::map<std::string, std::string>* metadata) {
  json header = json::parse(header_json, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return invalid_argument_error(file + ": header is not valid JSON");
  if (!header.is_object()) return invalid_argument_error(file + ": header is not a JSON object");
  const size_t data_bytes = file_bytes - kLengthPrefixBytes - header_bytes;
  std::vector<TensorView> views;
  std::vector<std::pair<uint64_t, size_t>> begins;  // begin offset, index into views
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        return invalid_argument_error(file + ": __metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return invalid_argument_error(file + ": __metadata__." + key + " is not a string");
        }
        if (metadata != nullptr) metadata->emplace(key, value.get<std::string>());
      }
      continue;
    }
    MOESERVE_ASSIGN_OR_RETURN(TensorView view,
                              parse_entry(name, entry, data_bytes, data_start, file));
    begins.emplace_back(entry["data_offsets"][0].get<uint64_t>(), views.size());
    views.push_back(std::move(view));
  }
  std::vector<std::pair<uint64_t, const TensorView*>> spans;
  spans.reserve(begins.size());
  for (const auto& [begin, index] : begins) spans.emplace_back(begin, &views[index]);
  MOESERVE_RETURN_IF_ERROR(check_no_overlap(std::move(spans), file));
  return views;
}

// One read-only private mapping of a whole file.
struct SafetensorsCheckpoint::Mapping {
  std::string path;
  const uint8_t* base = nullptr;
  size_t bytes = 0;

  ~Mapping() {
    if (base != nullptr) munmap(const_cast<uint8_t*>(base), bytes);
  }
};

SafetensorsCheckpoint::SafetensorsCheckpoint() = default;
SafetensorsCheckpoint::SafetensorsCheckpoint(SafetensorsCheckpoint&&) noexcept = default;
SafetensorsCheckpoint& SafetensorsCheckpoint::operator=(SafetensorsCheckpoint&&) noexcept = default;
SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

Status SafetensorsCheckpoint::add_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found_error(path + ": cannot open: " + errno_text());
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const std::string error = errno_text();
    ::close(fd);
    return internal_error(path + ": fstat: " + error);
  }
  const size_t file_bytes = static_cast<size_t>(st.st_size);
  if (Status fits = check_length_prefix_fits(file_bytes, path); !fits.ok()) {
    ::close(fd);
    return fits;
  }
  void* base = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string map_error = errno_text();
  ::close(fd);
  if (base == MAP_FAILED) return internal_error(path + ": mmap: " + map_error);
  auto mapping = std::make_unique<Mapping>();
  mapping->path = path;
  mapping->base = static_cast<const uint8_t*>(base);
  mapping->bytes = file_bytes;

  MOESERVE_ASSIGN_OR_RETURN(
      std::vector<TensorView> views,
      parse_safetensors_file(std::span<const uint8_t>(mapping->base, file_bytes), path,
                             &metadata_));
  for (TensorView& view : views) {
    auto existing = tensors_.find(view.name);
    if (existing != tensors_.end()) {
      return invalid_argument_error(path + ": tensor " + view.name + " is also in " +
                                    existing->second.file);
    }
    std::string name = view.name;
    tensors_.emplace(std::move(name), std::move(view));
  }
  mappings_.push_back(std::move(mapping));
  return ok_status();
}

StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::open_file(const std::string& path) {
  SafetensorsCheckpoint checkpoint;
  checkpoint.source_ = path;
  MOESERVE_RETURN_IF_ERROR(checkpoint.add_file(path));
  return checkpoint;
}

StatusOr<SafetensorsIndex> parse_safetensors_index(std::string_view text,
                                                   const std::string& index_path) {
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return invalid_argument_error(index_path + ": not a valid JSON object");
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return invalid_argument_error(index_path + ": weight_map: missing or not an object");
  }
  SafetensorsIndex out;
  std::set<std::string> seen;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return invalid_argument_error(index_path + ": weight_map." + tensor +
                                    ": expected a file name");
    }
    const std::string file = shard.get<std::string>();
    if (file.find('/') != std::string::npos) {
      return invalid_argument_error(index_path + ": weight_map." + tensor + ": shard \"" + file +
                                    "\" must be a plain file name in the model folder");
    }
    if (seen.insert(file).second) out.shards.push_back(file);
    out.weight_map.emplace_back(tensor, file);
  }
  if (out.shards.empty()) return invalid_argument_error(index_path + ": weight_map is empty");
  std::sort(out.shards.begin(), out.shards.end());
  return out;
}

StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::open_index(const std::string& index_path) {
  MOESERVE_ASSIGN_OR_RETURN(const std::string text, read_file(index_path));
  MOESERVE_ASSIGN_OR_RETURN(const SafetensorsIndex index,
                            parse_safetensors_index(text, index_path));
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  SafetensorsCheckpoint checkpoint;
  checkpoint.source_ = index_path;
  for (const std::string& shard : index.shards) {
    const std::string path = (dir / shard).string();
    if (!file_exists(path)) {
      return not_found_error(index_path + ": shard " + shard + " is missing (" + path + ")");
    }
    MOESERVE_RETURN_IF_ERROR(checkpoint.add_file(path));
  }
  for (const auto& [tensor, shard] : index.weight_map) {
    const std::string path = (dir / shard).string();
    const TensorView* view = checkpoint.find(tensor);
    if (view == nullptr) {
      return not_found_error(index_path + ": tensor " + tensor +
                             " is listed in the index but absent from " + path);
    }
    if (view->file != path) {
      return invalid_argument_error(index_path + ": tensor " + tensor + " is listed in " + path +
                                    " but found in " + view->file);
    }
  }
  return checkpoint;
}

StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (file_exists(index_path)) return open_index(index_path);
  const std::string single = dir + "/model.safetensors";
  if (file_exists(single)) return open_file(single);
  return not_found_error(dir + ": no model.safetensors or model.safetensors.index.json");
}

const TensorView* SafetensorsCheckpoint::find(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

size_t SafetensorsCheckpoint::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, view] : tensors_) total += view.bytes;
  return total;
}

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& mapping : mappings_) out.push_back(mapping->path);
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<TensorWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the tensors in data order, as the reference writer does.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  std::vector<const TensorWrite*> order;
  for (const TensorWrite& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorWrite* a, const TensorWrite* b) {
    const size_t sa = dtype_size(a->dtype);
    const size_t sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const TensorWrite* tensor : order) {
    const TensorWrite& t = *tensor;
    if (!names.insert(t.name).second) {
      return invalid_argument_error(path + ": tensor " + t.name + " written twice");
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return invalid_argument_error(path + ": tensor " + t.name + ": negative dim");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * dtype_size(t.dtype) != t.data.size()) {
      return invalid_argument_error(path + ": tensor " + t.name + ": " +
                                    std::to_string(t.data.size()) + " bytes given, shape needs " +
                                    std::to_string(numel * dtype_size(t.dtype)));
    }
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return internal_error(path + ": cannot create: " + errno_text());
  uint8_t length[kLengthPrefixBytes];
  uint64_t n = header_text.size();
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), kLengthPrefixBytes);
  out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
  for (const TensorWrite* t : order) {
    out.write(reinterpret_cast<const char*>(t->data.data()),
              static_cast<std::streamsize>(t->data.size()));
  }
  out.close();
  if (!out) return internal_error(path + ": write failed");
  return ok_status();
}

}  // namespace moeserve::model
