// Single-request generation on an Engine: prefill the prompt, then decode one token per
// step through the KV cache, sampling each (sampler.h), until max_tokens or a stop
// token. The request's KV blocks are returned to the cache when it ends, success or not.
//
// Also the `moeserve-worker generate` command (issue 3's command-line contract):
//   generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
//            [--temperature T] [--top-p P] [--top-k K] [--seed S] [--threads N] [--json]
//            [--logits]
// --prompt-ids are fed exactly as given (no BOS) and need no tokenizer; --prompt is
// encoded with the folder's tokenizer.json, with BOS first when tokenizer_config.json
// says add_bos_token. Generation stops at the model's EOS tokens (included in the
// output ids, left out of the text). --json prints one object
// {"prompt_ids":[...],"tokens":[...],"text":"..."} ("text" only with a tokenizer), and
// --logits adds "logits": the full-vocabulary logits at the last prompt position.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"
#include "worker/model/tokenizer.h"

namespace moeserve::engine {

struct GenerateRequest {
  std::vector<int32_t> prompt;  // at least one token
  int64_t max_tokens = 16;
  SamplingParams sampling;  // its stop_token_ids end generation
  bool keep_prompt_logits = false;
};

struct GenerateResult {
  std::vector<int32_t> tokens;        // generated, the stop token included when hit
  std::vector<SampleResult> samples;  // one per token
  std::vector<float> prompt_logits;   // last prompt position, when asked for
  bool stopped = false;               // ended on a stop token
};

// `on_token` (optional) sees each sample as it is produced.
StatusOr<GenerateResult> generate(Engine& engine, const GenerateRequest& request,
                                  const std::function<void(const SampleResult&)>& on_token = {});

// Token ids of a text prompt for the model folder `dir`: BOS (when tokenizer_config.json
// sets add_bos_token) followed by tokenizer.encode(text).
StatusOr<std::vector<int32_t>> encode_prompt(const std::string& dir,
                                             const model::Tokenizer& tokenizer,
                                             const model::ModelConfig& config,
                                             const std::string& text);

// The `generate` command; returns the process exit code.
int run_generate_command(const std::vector<std::string>& args);

}  // namespace moeserve::engine
