// DIR/.moeserve-fetch.json: what moeserve-fetch has put into a destination directory,
// so a later run (another pod, another group on the same PVC) can tell whether the
// checkpoint is already there.
//
//   {"repo": "org/name", "revision": "main", "sha": "<commit>", "include": ["*.json"],
//    "complete": true, "files": [{"name": "config.json", "size": 1234,
//                                 "checksum": "git-blob:<hex>"}, ...]}
//
// Contract: a file is listed only while its bytes on disk are the verified content of
// that checksum (the fetcher removes the entry before it replaces a file and adds it
// after), so a listed file with the right size can be trusted without re-hashing.
// "complete" is true only after every selected file of `sha` is listed and files of
// earlier commits that are no longer selected are gone. Written atomically (temp file +
// rename). Not thread-safe: callers hold the directory lock (dir_lock.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace moeserve::fetch {

inline constexpr const char* kMarkerName = ".moeserve-fetch.json";

struct MarkerFile {
  std::string name;
  int64_t size = 0;
  std::string checksum;  // HubFile::checksum()
  friend bool operator==(const MarkerFile&, const MarkerFile&) = default;
};

struct Marker {
  std::string repo;
  std::string revision;
  std::string sha;
  std::vector<std::string> include;  // the --include globs of the run ([] = all files)
  bool complete = false;
  std::vector<MarkerFile> files;

  const MarkerFile* find(const std::string& name) const;
  void erase(const std::string& name);
  void put(MarkerFile file);  // replaces an entry of the same name
  friend bool operator==(const Marker&, const Marker&) = default;
};

std::string marker_to_json(const Marker& marker);
// invalid_argument when the text is not a marker.
StatusOr<Marker> marker_from_json(const std::string& text);

// The marker in `dir`: nullopt when there is none; invalid_argument when it is unreadable
// or malformed (the caller then trusts nothing in the directory).
StatusOr<std::optional<Marker>> read_marker(const std::string& dir);
Status write_marker(const std::string& dir, const Marker& marker);

}  // namespace moeserve::fetch
