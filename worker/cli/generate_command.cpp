#include "worker/cli/generate_command.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "common/log.h"
#include "worker/cli/group_flags.h"
#include "worker/cli/speculative_flags.h"
#include "worker/engine/engine.h"
#include "worker/engine/group_step.h"
#include "worker/engine/scheduler.h"
#include "worker/model/prompt_encoder.h"

namespace moeserve::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  std::string batch_file;
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
  SpeculativeFlags speculative;
  GroupFlags group;
};

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> prompt_logits;
};

Status check_flags(const GenerateFlags& f, const FlagSet& flags) {
  if (f.model.empty()) return invalid_argument_error("--model is required");
  if (flags.is_set("prompt") + flags.is_set("prompt-ids") + flags.is_set("batch-file") != 1) {
    return invalid_argument_error("give exactly one of --prompt, --prompt-ids and --batch-file");
  }
  if (f.max_tokens < 0) return invalid_argument_error("--max-tokens must be >= 0");
  MOESERVE_RETURN_IF_ERROR(check_speculative_flags(f.speculative));
  return check_group_flags(f.group);
}

StatusOr<std::vector<std::vector<int32_t>>> read_prompts(
    const GenerateFlags& f, const FlagSet& flags,
    const std::optional<model::PromptEncoder>& encoder) {
  if (flags.is_set("batch-file")) return read_batch_file(f.batch_file);
  std::vector<int32_t> prompt;
  if (flags.is_set("prompt-ids")) {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> ids, parse_int_list(f.prompt_ids));
    prompt.assign(ids.begin(), ids.end());
  } else if (encoder.has_value()) {
    prompt = encoder->encode(f.prompt);
  } else {
    return failed_precondition_error(f.model +
                                     "/tokenizer.json is missing: --prompt needs a tokenizer "
                                     "(--prompt-ids does not)");
  }
  if (prompt.empty()) return invalid_argument_error("the prompt has no tokens");
  return std::vector<std::vector<int32_t>>{std::move(prompt)};
}

// Reads one request's events to its end. `on_token` sees each kept token as it comes.
StatusOr<Output> collect(engine::RequestStream& stream, int64_t max_tokens,
                         const std::function<void(int32_t)>& on_token) {
  Output out;
  while (!stream.done()) {
    for (engine::GenerationEvent& e : stream.next(std::chrono::milliseconds(100))) {
      if (!e.prompt_logits.empty()) out.prompt_logits = std::move(e.prompt_logits);
      if (e.has_token && static_cast<int64_t>(out.tokens.size()) < max_tokens) {
        out.tokens.push_back(e.sample.token);
        if (on_token) on_token(e.sample.token);
      }
      if (e.finish == engine::FinishReason::kError) return e.error;
      if (e.finish == engine::FinishReason::kCancelled) {
        return unavailable_error("generate: the scheduler stopped before the request finished");
      }
    }
  }
  return out;
}

// Submits every prompt to `scheduler` together and prints the results as the header
// says.
Status run_requests(const GenerateFlags& f, const std::vector<std::vector<int32_t>>& prompts,
                    const engine::SamplingParams& sampling,
                    const std::optional<model::PromptEncoder>& encoder,
                    engine::Scheduler& scheduler) {
  std::vector<std::shared_ptr<engine::RequestStream>> streams;
  for (const std::vector<int32_t>& prompt : prompts) {
    engine::GenerationRequest request;
    request.prompt = prompt;
    // The scheduler samples at least one token; --max-tokens 0 keeps none of it.
    request.max_tokens = std::max<int64_t>(1, f.max_tokens);
    request.sampling = sampling;
    request.return_prompt_logits = f.json && f.logits;
    MOESERVE_ASSIGN_OR_RETURN(std::shared_ptr<engine::RequestStream> stream,
                              scheduler.submit(std::move(request)));
    streams.push_back(std::move(stream));
  }
  const model::Tokenizer* tokenizer = encoder.has_value() ? &encoder->tokenizer() : nullptr;
  if (!f.json && f.batch_file.empty()) {
    // One plain prompt streams its text (or ids) as it is produced.
    std::optional<model::IncrementalDecoder> decoder;
    if (tokenizer != nullptr) decoder.emplace(*tokenizer, /*skip_special=*/true);
    auto print = [&](int32_t token) {
      if (decoder.has_value()) {
        std::cout << decoder->push(token) << std::flush;
      } else {
        std::cout << token << ' ' << std::flush;
      }
    };
    MOESERVE_RETURN_IF_ERROR(collect(*streams[0], f.max_tokens, print).status());
    if (decoder.has_value()) std::cout << decoder->flush();
    std::cout << '\n';
    return ok_status();
  }
  std::vector<Output> outputs;
  for (const auto& stream : streams) {
    MOESERVE_ASSIGN_OR_RETURN(Output out, collect(*stream, f.max_tokens, {}));
    outputs.push_back(std::move(out));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::vector<int32_t>& tokens = outputs[i].tokens;
    if (f.json) {
      nlohmann::json j;
      j["prompt_ids"] = prompts[i];
      j["tokens"] = tokens;
      if (tokenizer != nullptr) j["text"] = tokenizer->decode(tokens, /*skip_special=*/true);
      if (f.logits) j["logits"] = outputs[i].prompt_logits;
      std::cout << j.dump() << '\n';
    } else if (tokenizer != nullptr) {
      std::cout << tokenizer->decode(tokens, /*skip_special=*/true) << '\n';
    } else {
      for (int32_t token : tokens) std::cout << token << ' ';
      std::cout << '\n';
    }
  }
  return ok_status();
}

Status run_generate(const GenerateFlags& f, const FlagSet& flags) {
  MOESERVE_RETURN_IF_ERROR(check_flags(f, flags));
  MOESERVE_ASSIGN_OR_RETURN(RankStart start,
                            join_and_load(f.group, f.model, needs_mtp_layers(f.speculative)));
  std::unique_ptr<parallel::Group>& group = start.group;
  const model::ModelConfig& config = start.model->config;

  // Every rank checks the prompts, so a bad one fails each rank with its own message.
  std::optional<model::PromptEncoder> encoder;
  if (std::filesystem::exists(f.model + "/tokenizer.json")) {
    MOESERVE_ASSIGN_OR_RETURN(encoder, model::PromptEncoder::load(f.model, config));
  }
  MOESERVE_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> prompts,
                            read_prompts(f, flags, encoder));
  engine::SamplingParams sampling;
  sampling.temperature = f.temperature;
  sampling.top_p = f.top_p;
  sampling.top_k = static_cast<int32_t>(f.top_k);
  sampling.seed = static_cast<uint64_t>(f.seed);
  if (!f.ignore_eos) {
    for (int64_t eos : config.eos_token_ids) {
      sampling.stop_token_ids.push_back(static_cast<int32_t>(eos));
    }
  }
  MOESERVE_RETURN_IF_ERROR(validate(sampling));

  engine::EngineOptions eo;
  eo.threads = static_cast<int>(f.threads);
  int64_t kv_tokens = 0;
  int64_t prompt_tokens = 0;
  for (const std::vector<int32_t>& prompt : prompts) {
    // Each sequence holds whole blocks.
    const int64_t tokens = static_cast<int64_t>(prompt.size()) + std::max<int64_t>(1, f.max_tokens);
    kv_tokens += (tokens + engine::kBlockSize - 1) / engine::kBlockSize * engine::kBlockSize;
    prompt_tokens += static_cast<int64_t>(prompt.size());
  }
  eo.kv_cache_tokens = f.kv_cache_tokens > 0 ? f.kv_cache_tokens : kv_tokens;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(start.model, eo));

  // Every prompt runs at once and prefills in the first step, with nothing cached
  // between prompts: the batch is the one the prompts form, whatever the rank count.
  // A decode step has room for every sequence's drafts.
  engine::SchedulerOptions so;
  const int64_t batch = static_cast<int64_t>(prompts.size());
  so.max_num_seqs = batch;
  so.max_queue = batch;
  so.max_num_batched_tokens = std::max(prompt_tokens, batch * (1 + f.speculative.num_draft_tokens));
  so.prefix_caching = false;
  std::optional<engine::LeaderStepper> leader;
  if (group != nullptr) {
    MOESERVE_ASSIGN_OR_RETURN(
        engine::ExpertParallelDispatcher * dispatcher,
        engine::attach_expert_parallel(*engine, group->comm(), *start.placement));
    if (group->rank() != 0) return engine::follow_leader(group->comm(), *dispatcher);
    leader.emplace(group->comm());
    engine::install_leader_hooks(*leader, f.group.collective_timeout_ms, so);
  }
  MOESERVE_RETURN_IF_ERROR(
      configure_speculation(f.speculative, *engine, &so, engine::leader_draft_hook(leader)));
  engine::Scheduler scheduler(std::move(engine), so);
  scheduler.start();
  const Status status = run_requests(f, prompts, sampling, encoder, scheduler);
  scheduler.stop();
  // A healthy group is released even when the run failed (e.g. a refused prompt); a
  // failed one has no one left to tell.
  if (leader.has_value() && scheduler.failure().ok()) {
    if (Status s = leader->stop(); !s.ok()) {
      log::warn("could not stop the other ranks", {{"error", s.to_string()}});
    }
  }
  return status;
}

}  // namespace

int run_generate_command(const std::vector<std::string>& args) {
  GenerateFlags f;
  FlagSet flags(
      "moeserve-worker generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | "
      "--batch-file FILE) [flags]",
      "Generates a continuation of a prompt with a Hugging Face DeepSeek-V2/V3 "
      "checkpoint on the CPU.");
  flags.add_string("model", &f.model, "model folder (config.json, safetensors, tokenizer.json)");
  flags.add_string("prompt", &f.prompt, "prompt text (encoded with the folder's tokenizer)");
  flags.add_string("prompt-ids", &f.prompt_ids, "prompt token ids, fed exactly as given");
  flags.add_string("batch-file", &f.batch_file,
                   "several prompts, one per line as comma-separated token ids, run as a batch");
  flags.add_int("max-tokens", &f.max_tokens, "tokens to generate at most");
  flags.add_double("temperature", &f.temperature, "sampling temperature; 0 is greedy");
  flags.add_double("top-p", &f.top_p, "nucleus sampling mass in (0, 1]");
  flags.add_int("top-k", &f.top_k, "sample among the k most likely tokens; 0 is all");
  flags.add_int("seed", &f.seed, "sampling seed");
  flags.add_int("threads", &f.threads, "compute threads; 0 is one per hardware thread",
                "MOESERVE_THREADS");
  flags.add_int("kv-cache-tokens", &f.kv_cache_tokens,
                "KV cache capacity in tokens; 0 is prompt + max-tokens per prompt");
  flags.add_bool("json", &f.json, "print one JSON object per prompt");
  flags.add_bool("logits", &f.logits, "with --json: add the logits at the last prompt position");
  flags.add_bool("ignore-eos", &f.ignore_eos,
                 "do not stop at the model's EOS tokens (always generate --max-tokens)");
  add_speculative_flags(flags, &f.speculative);
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

}  // namespace moeserve::cli
