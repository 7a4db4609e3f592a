// The hf:// model source grammar, shared by the operator (spec.model.source) and
// moeserve-fetch, so both accept exactly the same sources:
//
//   hf://ORG/NAME[@REVISION]
//
// ORG and NAME: one or more of [A-Za-z0-9._-]. REVISION: a branch, a tag or a commit sha,
// segments of [A-Za-z0-9._-] separated by single '/' ("main", "v1.0", "refs/pr/3", a
// 40-hex sha). ".." appears nowhere (no path escapes /model, and neither the Hub nor git
// allow it). Without @REVISION the source follows the branch "main".
// Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace moeserve {

inline constexpr std::string_view kHfScheme = "hf://";
inline constexpr std::string_view kHfDefaultRevision = "main";
// The whole grammar as one regular expression that ECMAScript (std::regex) and RE2 (the
// CRD's CEL rule) read the same way; ".." is a separate check (RE2 has no lookahead).
inline constexpr const char* kHfSourcePattern =
    "^hf://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$";
inline constexpr size_t kMaxHfRevisionLength = 255;

struct HfSource {
  std::string repo;      // "org/name"
  std::string revision;  // as written; "" when the source names none
  // The revision to resolve: `revision`, or "main" when none was written.
  std::string effective_revision() const;
  // True when `revision` is a full commit sha (40 lowercase hex digits): the only form
  // that names the same files forever; a branch or tag can move.
  bool pinned() const;
};

// Decodes an hf:// source. invalid_argument with a message that says which part is wrong
// (scheme, repository, revision) and quotes the input; the caller prefixes the field name.
StatusOr<HfSource> parse_hf_source(std::string_view text);

// True for 40 lowercase hexadecimal digits.
bool is_commit_sha(std::string_view revision);

}  // namespace moeserve
