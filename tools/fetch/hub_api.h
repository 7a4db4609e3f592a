// The two Hugging Face Hub endpoints moeserve-fetch uses, as pure URL builders and a
// parser, so the HTTP side stays in fetcher.h:
//
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true
//     -> {"sha": "<commit>", "siblings": [{"rfilename", "size", "blobId",
//         "lfs": {"sha256", "size"}}...]}   (lfs only for files stored with Git LFS)
//   GET {endpoint}/{repo}/resolve/{commit}/{file}
//     -> the file, usually after a redirect to a CDN for LFS files
//
// The published checksums: lfs.sha256 (SHA-256 of the content) for LFS files, and for
// every other file blobId, the git blob id (SHA-1 of "blob <size>\0" + content).
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "common/status.h"

namespace moeserve::fetch {

struct HubFile {
  std::string name;     // path inside the repository ("model-00001-of-00163.safetensors")
  int64_t size = 0;     // bytes of the content
  std::string sha256;   // lowercase hex, LFS files only
  std::string blob_id;  // lowercase hex git blob id, non-LFS files only
  bool lfs() const { return !sha256.empty(); }
  // "sha256:<hex>" or "git-blob:<hex>": what the file is verified against.
  std::string checksum() const;
  friend bool operator==(const HubFile&, const HubFile&) = default;
};

struct HubRevision {
  std::string sha;  // the commit the revision resolved to
  std::vector<HubFile> files;
};

// Percent-encodes all but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash).
std::string percent_encode(std::string_view text, bool keep_slash);

// The URLs above; `endpoint` has no trailing '/'. The revision is encoded whole ("refs/pr/1"
// -> "refs%2Fpr%2F1"), the file path segment by segment.
std::string revision_info_url(std::string_view endpoint, std::string_view repo,
                              std::string_view revision);
std::string resolve_url(std::string_view endpoint, std::string_view repo, std::string_view sha,
                        std::string_view file);

// Decodes the revision endpoint's JSON. invalid_argument when it is not that shape, when
// the sha is not 40 hex digits, when a file lacks its size or checksum, or when a file
// name could escape the destination (absolute, "..", empty segments, a leading ".moeserve-").
StatusOr<HubRevision> parse_revision_info(std::string_view json_text);

// The Status for a Hub answer that is not 200: unauthenticated (401: a token is needed or
// wrong), permission_denied (403: gated, access not granted), not_found (404: no such
// repository, revision or file; the Hub's X-Error-Code and X-Error-Message when given),
// unavailable (5xx, 429: worth retrying), failed_precondition otherwise. `what` names the
// request ("revision main of org/name").
Status hub_error(const std::string& what, int status, const http::Headers& headers);

}  // namespace moeserve::fetch
