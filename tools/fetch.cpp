// moeserve-fetch: downloads one Hugging Face Hub revision into a directory, verified
// against the repository's published checksums (tools/fetch/fetcher.h). The worker
// image ships it; the operator runs it as the init container of hf:// sources.
//   moeserve-fetch hf://org/name[@revision] --dest DIR [--endpoint URL] [--token-file F]
//     [--include GLOB[,GLOB...]] [--offline]
// Environment: HF_ENDPOINT (default of --endpoint), HF_TOKEN (when no --token-file),
// HF_HUB_OFFLINE=1 (--offline), MOESERVE_LOG_LEVEL / MOESERVE_LOG_FORMAT.
// Exit codes: 0 the directory holds the revision; 1 the fetch failed (the reason is
// logged); 2 bad flags.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/flags.h"
#include "common/hf_source.h"
#include "common/http_client.h"
#include "common/log.h"
#include "tools/fetch/fetcher.h"

namespace {

namespace fetch = moeserve::fetch;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "moeserve-fetch: %s\n", message.c_str());
  return 2;
}

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::string(value) : fallback;
}

std::string trimmed(std::string text) {
  const char* space = " \t\r\n";
  text.erase(text.find_last_not_of(space) + 1);
  text.erase(0, text.find_first_not_of(space));
  return text;
}

std::vector<std::string> split_globs(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fetch::FetchOptions options;
  std::string endpoint = env_or("HF_ENDPOINT", fetch::kDefaultEndpoint);
  std::string token_file, include;
  bool offline = env_or("HF_HUB_OFFLINE", "0") == "1";
  int64_t retries = options.retries;
  moeserve::FlagSet flags(
      "moeserve-fetch hf://org/name[@revision] --dest DIR [flags]",
      "Downloads the files of one Hugging Face Hub revision (default: the branch main) into "
      "DIR, each checked against the repository's published size and checksum (SHA-256 for "
      "LFS files, the git blob id for others) before it appears under its name. A second "
      "run for the same commit downloads nothing; runs sharing DIR (one PVC for many pods) "
      "take turns on DIR/.moeserve-fetch.lock. Nothing is installed at run time.");
  flags.add_string("dest", &options.dest, "directory to fill (created when missing)");
  flags.add_string(
      "endpoint", &endpoint,
      "Hub or mirror URL (default $HF_ENDPOINT or " + std::string(fetch::kDefaultEndpoint) + ")");
  flags.add_string("token-file", &token_file,
                   "file holding the Hub token (default: $HF_TOKEN; none: anonymous)");
  flags.add_string("include", &include,
                   "comma-separated globs of the files to fetch ('*' also matches '/'; "
                   "default all)");
  flags.add_bool("offline", &offline,
                 "never contact the Hub: succeed only when DIR already holds the revision "
                 "(also HF_HUB_OFFLINE=1)");
  flags.add_int("retries", &retries, "attempts after a network error, 429 or 5xx, per request");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  if (moeserve::Status st = moeserve::log::configure_from_env(); !st.ok()) {
    return usage_error(st.message());
  }

  if (flags.positional().size() != 1) {
    return usage_error("expects exactly one source hf://org/name[@revision] (got " +
                       std::to_string(flags.positional().size()) + " positional arguments)");
  }
  moeserve::StatusOr<moeserve::HfSource> source = moeserve::parse_hf_source(flags.positional()[0]);
  if (!source.ok()) return usage_error("source: " + source.status().message());
  options.source = *source;
  if (options.dest.empty()) return usage_error("--dest is required");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (moeserve::StatusOr<moeserve::http::Url> url = moeserve::http::parse_url(endpoint);
      !url.ok() || url->target != "/") {
    return usage_error("--endpoint: must be http(s)://host[:port] without a path (got \"" +
                       endpoint + "\")");
  }
  options.endpoint = endpoint;
  if (!token_file.empty()) {
    moeserve::StatusOr<std::string> token = moeserve::read_file(token_file);
    if (!token.ok()) return usage_error("--token-file: " + token.status().message());
    options.token = trimmed(*token);
    if (options.token.empty()) return usage_error("--token-file: " + token_file + " is empty");
  } else {
    options.token = trimmed(env_or("HF_TOKEN", ""));
  }
  options.include = split_globs(include);
  if (!include.empty() && options.include.empty()) {
    return usage_error("--include: no glob in \"" + include + "\"");
  }
  if (retries < 0 || retries > 100) return usage_error("--retries: must be in 0..100");
  options.retries = static_cast<int32_t>(retries);
  options.offline = offline;

  moeserve::http::ClientOptions client_options;
  client_options.request_timeout_ms = 60000;  // per read while streaming a file
  moeserve::http::Client client(client_options);
  if (moeserve::Status st = client.init(); !st.ok()) {
    moeserve::log::error("fetch failed", {{"error", st.message()}});
    return 1;
  }
  moeserve::StatusOr<fetch::FetchResult> result = fetch::fetch(options, client);
  if (!result.ok()) {
    moeserve::log::error("fetch failed", {{"source", flags.positional()[0]},
                                          {"dest", options.dest},
                                          {"error", result.status().message()}});
    std::fprintf(stderr, "moeserve-fetch: %s\n", result.status().message().c_str());
    return 1;
  }
  return 0;
}
