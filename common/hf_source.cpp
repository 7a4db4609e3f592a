#include "common/hf_source.h"

#include "common/json_reader.h"

namespace moeserve {
namespace {

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_name(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!is_name_char(c)) return false;
  }
  return true;
}

// Segments of names separated by single '/'.
bool is_revision(std::string_view text) {
  size_t start = 0;
  while (true) {
    const size_t slash = text.find('/', start);
    if (!is_name(text.substr(start, slash == std::string_view::npos ? slash : slash - start))) {
      return false;
    }
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

Status refused(std::string_view text, const std::string& why) {
  return invalid_argument_error(why + " (hf://org/name[@revision], got " +
                                json_quoted(std::string(text)) + ")");
}

}  // namespace

std::string HfSource::effective_revision() const {
  return revision.empty() ? std::string(kHfDefaultRevision) : revision;
}

bool HfSource::pinned() const { return is_commit_sha(revision); }

bool is_commit_sha(std::string_view revision) {
  if (revision.size() != 40) return false;
  for (char c : revision) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

StatusOr<HfSource> parse_hf_source(std::string_view text) {
  if (text.substr(0, kHfScheme.size()) != kHfScheme) return refused(text, "must start with hf://");
  const std::string_view rest = text.substr(kHfScheme.size());
  const size_t at = rest.find('@');
  const std::string_view repo = rest.substr(0, at);
  const size_t slash = repo.find('/');
  if (slash == std::string_view::npos || !is_name(repo.substr(0, slash)) ||
      !is_name(repo.substr(slash + 1))) {
    return refused(text, "repository must be org/name, each one or more of A-Z a-z 0-9 . _ -");
  }
  if (repo.find("..") != std::string_view::npos) {
    return refused(text, "repository must not contain \"..\"");
  }
  HfSource out;
  out.repo = std::string(repo);
  if (at == std::string_view::npos) return out;
  const std::string_view revision = rest.substr(at + 1);
  if (revision.empty()) return refused(text, "revision after @ is empty");
  if (revision.size() > kMaxHfRevisionLength) {
    return refused(
        text, "revision must be at most " + std::to_string(kMaxHfRevisionLength) + " characters");
  }
  if (!is_revision(revision)) {
    return refused(text,
                   "revision must be a branch, tag or commit sha: segments of A-Z a-z 0-9 . _ - "
                   "separated by single /");
  }
  if (revision.find("..") != std::string_view::npos) {
    return refused(text, "revision must not contain \"..\"");
  }
  out.revision = std::string(revision);
  return out;
}

}  // namespace moeserve
