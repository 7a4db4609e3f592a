#include "operator/deployment/types.h"

#include <regex>

#include "common/hf_source.h"

namespace moeserve::deployment {
namespace {

// The same pattern as the CRD's CEL rule on pvc:// sources (ECMAScript and RE2 agree on
// it); hf:// sources follow common/hf_source.h.
constexpr const char* kPvcSourcePattern = "^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?$";

std::string last_segment(std::string_view text) {
  while (!text.empty() && text.back() == '/') text.remove_suffix(1);
  const size_t slash = text.rfind('/');
  return std::string(slash == std::string_view::npos ? text : text.substr(slash + 1));
}

}  // namespace

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFp8: return "fp8";
    case Precision::kBf16: return "bf16";
    case Precision::kAuto: return "auto";
  }
  return "fp8";
}

std::string_view speculative_name(SpeculativeMethod method) {
  switch (method) {
    case SpeculativeMethod::kNone: return "none";
    case SpeculativeMethod::kMtp: return "mtp";
    case SpeculativeMethod::kNgram: return "ngram";
  }
  return "none";
}

std::string_view engine_name(EngineKind kind) {
  switch (kind) {
    case EngineKind::kMoeserve: return "moeserve";
    case EngineKind::kVllm: return "vllm";
    case EngineKind::kSglang: return "sglang";
  }
  return "moeserve";
}

const std::string& engine_image(const ModelDeploymentSpec& spec) {
  return spec.engine.image.empty() ? spec.worker.image : spec.engine.image;
}

std::optional<ModelSource> parse_model_source(std::string_view source) {
  const std::string text(source);
  ModelSource out;
  if (text.rfind("hf://", 0) == 0) {
    StatusOr<HfSource> hf = parse_hf_source(text);
    if (!hf.ok()) return std::nullopt;
    out.kind = ModelSource::Kind::kHuggingFace;
    out.repo = hf->repo;
    out.revision = hf->revision;
    return out;
  }
  if (text.rfind("pvc://", 0) == 0) {
    if (!std::regex_match(text, std::regex(kPvcSourcePattern))) return std::nullopt;
    out.kind = ModelSource::Kind::kPvc;
    const std::string rest = text.substr(6);
    const size_t slash = rest.find('/');
    out.claim = rest.substr(0, slash);
    if (slash != std::string::npos) {
      std::string_view path = std::string_view(rest).substr(slash);
      while (!path.empty() && path.front() == '/') path.remove_prefix(1);
      out.path = std::string(path);
    }
    return out;
  }
  if (text.empty() || text.front() != '/') return std::nullopt;
  out.kind = ModelSource::Kind::kPath;
  out.path = text;
  return out;
}

std::string served_model_name(const ModelSpec& model) {
  if (!model.served_model_name.empty()) return model.served_model_name;
  // "hf://org/name@refs/pr/3" serves "name": a revision is not part of the name.
  if (StatusOr<HfSource> hf = parse_hf_source(model.source); hf.ok()) {
    return last_segment(hf->repo);
  }
  return last_segment(model.source);
}

std::optional<int64_t> whole_quantity(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::stoll(text);
}

int32_t gpus_per_pod(const WorkerSpec& worker) {
  const std::string key(kGpuResource);
  for (const auto* quantities : {&worker.resources.limits, &worker.resources.requests}) {
    if (auto it = quantities->find(key); it != quantities->end()) {
      return static_cast<int32_t>(whole_quantity(it->second).value_or(0));
    }
  }
  return 0;
}

}  // namespace moeserve::deployment
