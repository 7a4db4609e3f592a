#include "tools/fetch/marker.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file.h"

namespace moeserve::fetch {
namespace {

using nlohmann::json;

std::string marker_path(const std::string& dir) { return dir + "/" + kMarkerName; }

// Writes `text` to `path` and flushes it to the device, so a rename after it never
// publishes a marker whose bytes are not on disk yet.
Status write_synced(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return internal_error(path + ": cannot create: " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() &&
                  std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved = errno;
  std::fclose(f);
  if (!ok) return internal_error(path + ": write failed: " + std::strerror(saved));
  return ok_status();
}

}  // namespace

const MarkerFile* Marker::find(const std::string& name) const {
  for (const MarkerFile& f : files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void Marker::erase(const std::string& name) {
  std::erase_if(files, [&](const MarkerFile& f) { return f.name == name; });
}

void Marker::put(MarkerFile file) {
  erase(file.name);
  files.push_back(std::move(file));
}

std::string marker_to_json(const Marker& marker) {
  json files = json::array();
  for (const MarkerFile& f : marker.files) {
    files.push_back({{"name", f.name}, {"size", f.size}, {"checksum", f.checksum}});
  }
  return json({{"repo", marker.repo},
               {"revision", marker.revision},
               {"sha", marker.sha},
               {"include", marker.include},
               {"complete", marker.complete},
               {"files", files}})
             .dump(2) +
         "\n";
}

StatusOr<Marker> marker_from_json(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [](const std::string& why) { return invalid_argument_error("marker: " + why); };
  if (!doc.is_object()) return bad("not a JSON object");
  Marker m;
  for (auto [key, target] :
       {std::pair{"repo", &m.repo}, std::pair{"revision", &m.revision}, std::pair{"sha", &m.sha}}) {
    if (!doc.contains(key) || !doc[key].is_string()) return bad(std::string(key) + " missing");
    *target = doc[key].get<std::string>();
  }
  if (!doc.contains("complete") || !doc["complete"].is_boolean()) return bad("complete missing");
  m.complete = doc["complete"].get<bool>();
  const json& include = doc.value("include", json::array());
  if (!include.is_array()) return bad("include is not a list");
  for (const json& glob : include) {
    if (!glob.is_string()) return bad("include holds a non-string");
    m.include.push_back(glob.get<std::string>());
  }
  if (!doc.contains("files") || !doc["files"].is_array()) return bad("files missing");
  for (const json& f : doc["files"]) {
    if (!f.is_object() || !f.value("name", json()).is_string() ||
        !f.value("size", json()).is_number_integer() || !f.value("checksum", json()).is_string()) {
      return bad("a file entry lacks name, size or checksum");
    }
    m.files.push_back(
        {f["name"].get<std::string>(), f["size"].get<int64_t>(), f["checksum"].get<std::string>()});
  }
  return m;
}

StatusOr<std::optional<Marker>> read_marker(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(marker_path(dir), ec)) return std::optional<Marker>();
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_file(marker_path(dir)));
  StatusOr<Marker> marker = marker_from_json(text);
  if (!marker.ok()) {
    return invalid_argument_error(marker_path(dir) + ": " + marker.status().message());
  }
  return std::optional<Marker>(std::move(marker).value());
}

Status write_marker(const std::string& dir, const Marker& marker) {
  const std::string tmp = marker_path(dir) + ".tmp";
  MOESERVE_RETURN_IF_ERROR(write_synced(tmp, marker_to_json(marker)));
  if (std::rename(tmp.c_str(), marker_path(dir).c_str()) != 0) {
    return internal_error(marker_path(dir) + ": rename failed: " + std::strerror(errno));
  }
  return ok_status();
}

}  // namespace moeserve::fetch
