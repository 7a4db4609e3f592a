// moeserve-fetch's work: puts the files of one Hub revision into a directory, verified.
//
// fetch() resolves the revision to a commit through the Hub API (hub_api.h), selects the
// files (--include globs), and downloads each one that the directory does not already
// hold from {endpoint}/{repo}/resolve/{commit}/{file}, following redirects (to a CDN;
// the token is not sent to another origin). Every download streams into
// DIR/.moeserve-fetch-parts/, is checked against the listing's size and published
// checksum (SHA-256 for LFS files, the git blob id for the others), fsynced and renamed
// into place, so DIR never holds a partial or unverified file under its real name. A
// part left by an interrupted run is resumed with a Range request. A checksum mismatch
// deletes the part and fails, naming the file and both checksums.
//
// The directory may be shared (a PVC cache used by many groups): the whole run holds
// DIR's lock (dir_lock.h), and the marker (marker.h) records which files are verified
// for which commit. A run whose commit, repository and globs match a complete marker,
// with every file present at its size, downloads nothing. With a commit sha as the
// revision that check needs no network, and `offline` makes it the only path (never
// contacting the Hub; an error when the directory does not hold the revision). Files
// of an earlier commit that are no longer selected are deleted; files the marker does
// not list are never touched.
//
// Network errors, 429 and 5xx are retried (`retries` times, doubling the delay); 401,
// 403 and 404 are not. Progress (bytes, total_bytes, percent, mb_per_s) is logged every
// progress_every_ms. Not thread-safe per call; concurrent calls (threads or processes)
// on one directory serialise on its lock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/hf_source.h"
#include "common/http_client.h"
#include "common/status.h"
#include "tools/fetch/hub_api.h"

namespace moeserve::fetch {

inline constexpr const char* kPartsDirName = ".moeserve-fetch-parts";
inline constexpr const char* kDefaultEndpoint = "https://huggingface.co";

struct FetchOptions {
  HfSource source;
  std::string dest;
  std::string endpoint = kDefaultEndpoint;  // no trailing '/'
  std::string token;                        // "": anonymous
  std::vector<std::string> include;         // fnmatch(3) globs, '*' crosses '/'; []: all
  bool offline = false;
  int32_t retries = 4;
  int64_t retry_delay_ms = 1000;
  int64_t progress_every_ms = 5000;
  int32_t max_redirects = 10;
};

struct FetchResult {
  std::string sha;
  bool already_present = false;  // nothing was downloaded or removed
  int32_t files_downloaded = 0;
  int32_t files_kept = 0;  // already verified in the directory
  int32_t files_removed = 0;
  int64_t bytes_downloaded = 0;
};

// The files of `files` that match any glob of `include` (all of them when it is empty),
// in listing order. invalid_argument when globs were given and none matches.
StatusOr<std::vector<HubFile>> select_files(const std::vector<HubFile>& files,
                                            const std::vector<std::string>& include);

StatusOr<FetchResult> fetch(const FetchOptions& options, const http::Client& client);

}  // namespace moeserve::fetch
