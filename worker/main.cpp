// moeserve-worker: flags -> components. Each command lives in worker/server or
// worker/engine; this file only names them.
#include <vector>

#include "common/cli.h"
#include "worker/engine/generate.h"
#include "worker/server/serve.h"

int main(int argc, char** argv) {
  const std::vector<moeserve::Command> commands = {
      {"generate", "generate a continuation of a prompt (CPU, one request)",
       &moeserve::engine::run_generate_command},
      {"serve", "serve an OpenAI-compatible HTTP API with metrics (continuous batching)",
       &moeserve::server::run_serve_command},
  };
  return moeserve::run_cli(
      "moeserve-worker",
      "Inference engine for DeepSeek-V3-family MoE checkpoints (Hugging Face format).", commands,
      argc, argv);
}
