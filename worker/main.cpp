// moeserve-worker: names the commands; each lives in worker/cli with its flags.
#include <vector>

#include "common/cli.h"
#include "worker/cli/generate_command.h"
#include "worker/cli/serve_command.h"

int main(int argc, char** argv) {
  const std::vector<moeserve::Command> commands = {
      {"generate", "generate continuations of prompts (CPU; one prompt or a batch file)",
       &moeserve::cli::run_generate_command},
      {"serve", "serve an OpenAI-compatible HTTP API with metrics (continuous batching)",
       &moeserve::cli::run_serve_command},
  };
  return moeserve::run_cli(
      "moeserve-worker",
      "Inference engine for DeepSeek-V3-family MoE checkpoints (Hugging Face format).", commands,
      argc, argv);
}
