// The `moeserve-worker generate` command: a thin client of engine::Scheduler (the one
// `serve` runs) and of the group protocol (worker/engine/group_step.h).
//
//   generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --batch-file FILE)
//            [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]
//            [--threads N] [--kv-cache-tokens N] [--json] [--logits] [--ignore-eos]
//            [speculative flags: speculative_flags.h] [group flags: group_flags.h]
//
// --prompt-ids are fed exactly as given (no BOS) and need no tokenizer; --prompt is
// encoded with model::PromptEncoder (BOS first when tokenizer_config.json says
// add_bos_token). --batch-file holds several prompts, one per line as comma-separated
// token ids; they are submitted together, so they run as one batch. Generation stops at
// the model's EOS tokens (included in the output ids, left out of the text) unless
// --ignore-eos; --max-tokens 0 runs the prompt only. The KV cache holds prompt +
// max-tokens per prompt in whole blocks unless --kv-cache-tokens.
//
// Output: a single prompt streams its text (or its ids without a tokenizer) as it is
// generated; a batch prints one line per prompt, in prompt order. --json prints one
// object per prompt, in prompt order: {"prompt_ids":[...],"tokens":[...],"text":"..."}
// ("text" only with a tokenizer), and --logits adds "logits": the full-vocabulary logits
// at the last prompt position.
//
// In a rank group every request runs on rank 0's scheduler, which drives the other
// ranks as a LeaderStepper and sends kStop when done; ranks > 0 follow and print
// nothing. A lost rank fails the run (exit 1) on every other rank within the collective
// timeout, naming the rank. Exit codes: 0 done, 1 failed, 2 bad command line.
#pragma once

#include <string>
#include <vector>

namespace moeserve::cli {

// The `generate` command; returns the process exit code.
int run_generate_command(const std::vector<std::string>& args);

}  // namespace moeserve::cli
