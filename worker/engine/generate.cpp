#include "worker/engine/generate.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "worker/engine/group_generate.h"
#include "worker/model/weights.h"

namespace moeserve::engine {
namespace {

// Returns the sequence's blocks to the cache however generation ends.
class SequenceGuard {
 public:
  explicit SequenceGuard(KvCache& cache) : cache_(cache) {}
  ~SequenceGuard() { cache_.release(seq); }
  SequenceKv seq;

 private:
  KvCache& cache_;
};

StatusOr<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found_error(path + ": cannot open");
  nlohmann::json value = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return invalid_argument_error(path + ": not valid JSON");
  return value;
}

// The BOS id named by tokenizer_config.json's bos_token (a string or {"content": ...}),
// else the config's bos_token_id; nullopt when add_bos_token is absent or false.
StatusOr<std::optional<int32_t>> bos_to_add(const std::string& dir,
                                            const model::Tokenizer& tokenizer,
                                            const model::ModelConfig& config) {
  const std::string path = dir + "/tokenizer_config.json";
  if (!std::filesystem::exists(path)) return std::optional<int32_t>();
  MOESERVE_ASSIGN_OR_RETURN(nlohmann::json tc, read_json_file(path));
  if (!tc.is_object() || !tc.value("add_bos_token", false)) return std::optional<int32_t>();
  std::string bos_text;
  if (tc.contains("bos_token") && tc["bos_token"].is_string()) bos_text = tc["bos_token"];
  if (tc.contains("bos_token") && tc["bos_token"].is_object()) {
    bos_text = tc["bos_token"].value("content", "");
  }
  if (auto id = tokenizer.token_to_id(bos_text); id.has_value()) return std::optional(*id);
  if (config.bos_token_id >= 0) return std::optional(static_cast<int32_t>(config.bos_token_id));
  return invalid_argument_error(path + ": add_bos_token is set but bos_token '" + bos_text +
                                "' is not in the tokenizer and config.json has no bos_token_id");
}

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  int64_t max_tokens = 16;
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  int64_t seed = 0;
  int64_t threads = 0;
  int64_t kv_cache_tokens = 0;
  bool json = false;
  bool logits = false;
  bool ignore_eos = false;
  GroupFlags group;  // --batch-file and expert parallelism (group_generate.h)
};

Status run_generate(const GenerateFlags& f, const FlagSet& flags) {
  if (f.model.empty()) return invalid_argument_error("--model is required");
  const bool batch = flags.is_set("batch-file");
  if (flags.is_set("prompt") + flags.is_set("prompt-ids") + batch != 1) {
    return invalid_argument_error("give exactly one of --prompt, --prompt-ids and --batch-file");
  }
  if (f.max_tokens < 0) return invalid_argument_error("--max-tokens must be >= 0");
  // The group forms before loading, so the rendezvous timeout covers start-up skew only.
  std::unique_ptr<parallel::Group> group;
  if (wants_group(flags)) {
    MOESERVE_ASSIGN_OR_RETURN(group, join_group(f.group));
  } else if (flags.is_set("placement")) {
    return invalid_argument_error("--placement needs --world-size and --leader");
  }

  MOESERVE_ASSIGN_OR_RETURN(
      model::LoadedModel loaded,
      model::load_model(f.model, model::BindOptions{.load_mtp = false, .prefault = true}));
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded));
  const model::ModelConfig& config = shared->config;

  std::optional<model::Tokenizer> tokenizer;
  const std::string tokenizer_path = f.model + "/tokenizer.json";
  if (std::filesystem::exists(tokenizer_path)) {
    MOESERVE_ASSIGN_OR_RETURN(tokenizer, model::Tokenizer::load(tokenizer_path));
  }

  GenerateRequest request;
  std::vector<std::vector<int32_t>> batch_prompts;
  if (batch) {
    MOESERVE_ASSIGN_OR_RETURN(batch_prompts, read_batch_file(f.group.batch_file));
    request.prompt = batch_prompts[0];
  } else if (flags.is_set("prompt-ids")) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> ids, parse_int_list(f.prompt_ids));
    for (int64_t id : ids) request.prompt.push_back(static_cast<int32_t>(id));
  } else {
    if (!tokenizer.has_value()) {
      return failed_precondition_error(tokenizer_path +
                                       " is missing: --prompt needs a tokenizer "
                                       "(--prompt-ids does not)");
    }
    MOESERVE_ASSIGN_OR_RETURN(request.prompt, encode_prompt(f.model, *tokenizer, config, f.prompt));
  }
  if (request.prompt.empty()) return invalid_argument_error("the prompt has no tokens");
  request.max_tokens = f.max_tokens;
  request.keep_prompt_logits = f.logits;
  request.sampling.temperature = f.temperature;
  request.sampling.top_p = f.top_p;
  request.sampling.top_k = static_cast<int32_t>(f.top_k);
  request.sampling.seed = static_cast<uint64_t>(f.seed);
  for (int64_t eos : config.eos_token_ids) {
    if (!f.ignore_eos) request.sampling.stop_token_ids.push_back(static_cast<int32_t>(eos));
  }
  MOESERVE_RETURN_IF_ERROR(validate(request.sampling));

  std::vector<GenerateRequest> requests;
  for (const std::vector<int32_t>& prompt : batch_prompts) {
    requests.push_back(request);
    requests.back().prompt = prompt;
  }
  if (requests.empty()) requests.push_back(request);
  int64_t needed_tokens = 0;
  for (const GenerateRequest& r : requests) {
    // Each sequence holds whole blocks.
    const int64_t tokens = static_cast<int64_t>(r.prompt.size()) + f.max_tokens;
    needed_tokens += (tokens + kBlockSize - 1) / kBlockSize * kBlockSize;
  }

  EngineOptions options;
  options.threads = static_cast<int>(f.threads);
  options.kv_cache_tokens = f.kv_cache_tokens > 0 ? f.kv_cache_tokens : needed_tokens;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(shared, options));

  auto print_json = [&](const std::vector<int32_t>& prompt, const GenerateResult& result) {
    nlohmann::json out;
    out["prompt_ids"] = prompt;
    out["tokens"] = result.tokens;
    if (tokenizer.has_value()) {
      out["text"] = tokenizer->decode(result.tokens, /*skip_special=*/true);
    }
    if (f.logits) out["logits"] = result.prompt_logits;
    std::cout << out.dump() << '\n';
  };
  if (batch || group != nullptr) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<GenerateResult> results,
                              generate_in_group(*engine, group.get(), requests, f.group.placement));
    for (size_t i = 0; i < results.size(); ++i) {
      if (f.json) {
        print_json(requests[i].prompt, results[i]);
      } else if (tokenizer.has_value()) {
        std::cout << tokenizer->decode(results[i].tokens, /*skip_special=*/true) << '\n';
      } else {
        for (int32_t token : results[i].tokens) std::cout << token << ' ';
        std::cout << '\n';
      }
    }
    return ok_status();
  }

  // Plain output streams the text (or the ids without a tokenizer) as it is produced.
  std::optional<model::IncrementalDecoder> stream;
  if (!f.json && tokenizer.has_value()) stream.emplace(*tokenizer, /*skip_special=*/true);
  auto on_token = [&](const SampleResult& s) {
    if (f.json) return;
    if (stream.has_value()) {
      std::cout << stream->push(s.token) << std::flush;
    } else {
      std::cout << s.token << ' ' << std::flush;
    }
  };
  MOESERVE_ASSIGN_OR_RETURN(GenerateResult result, generate(*engine, request, on_token));

  if (!f.json) {
    if (stream.has_value()) std::cout << stream->flush();
    std::cout << '\n';
    return ok_status();
  }
  print_json(request.prompt, result);
  return ok_status();
}

}  // namespace

StatusOr<GenerateResult> generate(Engine& engine, const GenerateRequest& request,
                                  const std::function<void(const SampleResult&)>& on_token) {
  MOESERVE_RETURN_IF_ERROR(validate(request.sampling));
  if (request.prompt.empty()) return invalid_argument_error("generate: empty prompt");
  SequenceGuard guard(engine.kv_cache());
  ForwardOutput out;
  MOESERVE_RETURN_IF_ERROR(engine.forward({SequenceInput{&guard.seq, request.prompt}}, &out));

  GenerateResult result;
  if (request.keep_prompt_logits) {
    result.prompt_logits.assign(out.row(0), out.row(0) + out.vocab_size);
  }
  Sampler sampler(request.sampling);
  for (int64_t i = 0; i < request.max_tokens; ++i) {
    SampleResult sample = sampler.sample(out.row(0), static_cast<int32_t>(out.vocab_size));
    result.tokens.push_back(sample.token);
    if (on_token) on_token(sample);
    result.stopped = sample.stop;
    result.samples.push_back(std::move(sample));
    if (result.stopped || i + 1 == request.max_tokens) break;
    MOESERVE_RETURN_IF_ERROR(engine.forward(
        {SequenceInput{&guard.seq, std::span<const int32_t>(&result.tokens.back(), 1)}}, &out));
  }
  return result;
}

StatusOr<std::vector<int32_t>> encode_prompt(const std::string& dir,
                                             const model::Tokenizer& tokenizer,
                                             const model::ModelConfig& config,
                                             const std::string& text) {
  MOESERVE_ASSIGN_OR_RETURN(std::optional<int32_t> bos, bos_to_add(dir, tokenizer, config));
  std::vector<int32_t> ids;
  if (bos.has_value()) ids.push_back(*bos);
  const std::vector<int32_t> body = tokenizer.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

int run_generate_command(const std::vector<std::string>& args) {
  GenerateFlags f;
  FlagSet flags("moeserve-worker generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [flags]",
                "Generates a continuation of a prompt with a Hugging Face DeepSeek-V2/V3 "
                "checkpoint on the CPU.");
  flags.add_string("model", &f.model, "model folder (config.json, safetensors, tokenizer.json)");
  flags.add_string("prompt", &f.prompt, "prompt text (encoded with the folder's tokenizer)");
  flags.add_string("prompt-ids", &f.prompt_ids, "prompt token ids, fed exactly as given");
  flags.add_int("max-tokens", &f.max_tokens, "tokens to generate at most");
  flags.add_double("temperature", &f.temperature, "sampling temperature; 0 is greedy");
  flags.add_double("top-p", &f.top_p, "nucleus sampling mass in (0, 1]");
  flags.add_int("top-k", &f.top_k, "sample among the k most likely tokens; 0 is all");
  flags.add_int("seed", &f.seed, "sampling seed");
  flags.add_int("threads", &f.threads, "compute threads; 0 is one per hardware thread",
                "MOESERVE_THREADS");
  flags.add_int("kv-cache-tokens", &f.kv_cache_tokens,
                "KV cache capacity in tokens; 0 is prompt + max-tokens");
  flags.add_bool("json", &f.json, "print one JSON object");
  flags.add_bool("logits", &f.logits, "with --json: add the logits at the last prompt position");
  flags.add_bool("ignore-eos", &f.ignore_eos,
                 "do not stop at the model's EOS tokens (always generate --max-tokens)");
  add_batch_flag(flags, &f.group);
  add_group_flags(flags, &f.group);
  if (Status s = flags.parse(args); !s.ok()) {
    std::cerr << "generate: " << s.message() << "\n" << flags.help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (Status s = run_generate(f, flags); !s.ok()) {
    std::cerr << "generate: " << s.to_string() << '\n';
    return 1;
  }
  return 0;
}

}  // namespace moeserve::engine
