#include "tools/fetch/hub_api.h"

#include <nlohmann/json.hpp>

#include "common/hf_source.h"
#include "common/json_reader.h"

namespace moeserve::fetch {
namespace {

using nlohmann::json;

bool is_hex(std::string_view text, size_t length) {
  if (text.size() != length) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string header_of(const http::Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

// A repository file name that stays inside the destination directory and cannot be
// mistaken for the fetcher's own bookkeeping files.
Status check_file_name(const std::string& name) {
  auto bad = [&](const std::string& why) {
    return invalid_argument_error("Hub listing: file " + json_quoted(name) + " " + why);
  };
  if (name.empty() || name.front() == '/') return bad("is not a relative path");
  if (name.find('\0') != std::string::npos || name.find('\\') != std::string::npos) {
    return bad("has a NUL or backslash");
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    const std::string_view segment = std::string_view(name).substr(start, slash - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return bad("has an empty, \".\" or \"..\" segment");
    }
    start = slash + 1;
  }
  if (name.rfind(".moeserve-", 0) == 0) return bad("collides with moeserve-fetch's own files");
  return ok_status();
}

StatusOr<int64_t> size_field(const json& object, const char* key, const std::string& name) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return invalid_argument_error("Hub listing: file " + json_quoted(name) + " has no \"" + key +
                                  "\" (ask with ?blobs=true)");
  }
  return it->get<int64_t>();
}

StatusOr<HubFile> parse_sibling(const json& sibling) {
  if (!sibling.is_object() || !sibling.contains("rfilename") || !sibling["rfilename"].is_string()) {
    return invalid_argument_error("Hub listing: a sibling has no \"rfilename\"");
  }
  HubFile file;
  file.name = sibling["rfilename"].get<std::string>();
  MOESERVE_RETURN_IF_ERROR(check_file_name(file.name));
  MOESERVE_ASSIGN_OR_RETURN(file.size, size_field(sibling, "size", file.name));
  if (auto lfs = sibling.find("lfs"); lfs != sibling.end() && !lfs->is_null()) {
    const json sha = lfs->is_object() ? lfs->value("sha256", json()) : json();
    if (!sha.is_string() || !is_hex(sha.get<std::string>(), 64)) {
      return invalid_argument_error("Hub listing: file " + json_quoted(file.name) +
                                    " has no lfs.sha256 of 64 hex digits");
    }
    file.sha256 = sha.get<std::string>();
    MOESERVE_ASSIGN_OR_RETURN(int64_t lfs_size, size_field(*lfs, "size", file.name));
    if (lfs_size != file.size) {
      return invalid_argument_error("Hub listing: file " + json_quoted(file.name) + " has size " +
                                    std::to_string(file.size) + " but lfs.size " +
                                    std::to_string(lfs_size));
    }
    return file;
  }
  const json blob = sibling.value("blobId", json());
  if (!blob.is_string() || !is_hex(blob.get<std::string>(), 40)) {
    return invalid_argument_error("Hub listing: file " + json_quoted(file.name) +
                                  " has neither lfs.sha256 nor a blobId of 40 hex digits");
  }
  file.blob_id = blob.get<std::string>();
  return file;
}

}  // namespace

std::string HubFile::checksum() const { return lfs() ? "sha256:" + sha256 : "git-blob:" + blob_id; }

std::string percent_encode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string revision_info_url(std::string_view endpoint, std::string_view repo,
                              std::string_view revision) {
  return std::string(endpoint) + "/api/models/" + std::string(repo) + "/revision/" +
         percent_encode(revision, false) + "?blobs=true";
}

std::string resolve_url(std::string_view endpoint, std::string_view repo, std::string_view sha,
                        std::string_view file) {
  return std::string(endpoint) + "/" + std::string(repo) + "/resolve/" + std::string(sha) + "/" +
         percent_encode(file, true);
}

StatusOr<HubRevision> parse_revision_info(std::string_view json_text) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return invalid_argument_error("Hub listing: not a JSON object");
  HubRevision out;
  const json sha = doc.value("sha", json());
  if (!sha.is_string() || !is_commit_sha(sha.get<std::string>())) {
    return invalid_argument_error("Hub listing: \"sha\" is not a 40-hex commit id");
  }
  out.sha = sha.get<std::string>();
  const json siblings = doc.value("siblings", json());
  if (!siblings.is_array()) return invalid_argument_error("Hub listing: no \"siblings\" list");
  for (const json& sibling : siblings) {
    MOESERVE_ASSIGN_OR_RETURN(HubFile file, parse_sibling(sibling));
    out.files.push_back(std::move(file));
  }
  return out;
}

Status hub_error(const std::string& what, int status, const http::Headers& headers) {
  const std::string code = header_of(headers, "x-error-code");
  const std::string message = header_of(headers, "x-error-message");
  std::string detail = "HTTP " + std::to_string(status);
  if (!code.empty()) detail += " " + code;
  if (!message.empty()) detail += ": " + message;
  const std::string text = what + ": " + detail;
  switch (status) {
    case 401:
      return unauthenticated_error(text +
                                   " (the repository is gated or private, or does not exist: "
                                   "give a token with --token-file or HF_TOKEN)");
    case 403:
      return permission_denied_error(text +
                                     " (the token has no access: accept the repository's "
                                     "conditions on the Hub or use a token that has)");
    case 404: return not_found_error(text);
    case 429: return unavailable_error(text);
    default: break;
  }
  if (status >= 500) return unavailable_error(text);
  return failed_precondition_error(text);
}

}  // namespace moeserve::fetch
