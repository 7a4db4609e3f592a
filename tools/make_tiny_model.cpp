// moeserve-make-tiny-model: writes a random DeepSeek-V2/V3 model folder in the Hugging
// Face layout (worker/model/tiny_model.h). Flags -> write_tiny_model; nothing else.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "worker/model/tiny_model.h"

namespace {

using moeserve::model::ParameterCounts;
using moeserve::model::TinyModelOptions;

std::string millions(int64_t n) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1fM", static_cast<double>(n) / 1e6);
  return buffer;
}

std::string mib(int64_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buffer;
}

// One line per preset and architecture, computed from the configs themselves.
std::string preset_table() {
  std::string out = "Presets (main model; MTP layers extra):\n";
  for (auto preset : {moeserve::model::TinyPreset::kTiny, moeserve::model::TinyPreset::kBench1b}) {
    for (auto arch :
         {moeserve::model::Architecture::kDeepseekV3, moeserve::model::Architecture::kDeepseekV2}) {
      TinyModelOptions options;
      options.preset = preset;
      options.architecture = arch;
      auto config =
          moeserve::model::parse_config(moeserve::model::tiny_model_config_json(options).dump());
      if (!config.ok()) return out + config.status().to_string() + "\n";
      const ParameterCounts c = moeserve::model::count_parameters(*config);
      out += "  " + std::string(moeserve::model::preset_name(preset)) + " " + config->model_type +
             ": hidden " + std::to_string(config->hidden_size) + ", " +
             std::to_string(config->num_hidden_layers) + " layers, " +
             std::to_string(config->n_routed_experts) + " experts top-" +
             std::to_string(config->num_experts_per_tok) + ", vocab " +
             std::to_string(config->vocab_size) + ": " + millions(c.total) + " params, " +
             millions(c.active_per_token) + " active/token (" + mib(c.active_bytes_fp8) + " fp8, " +
             mib(c.active_bytes_bf16) + " bf16 read per token), MTP " + millions(c.mtp) + "\n";
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir;
  std::string arch = "deepseek_v3";
  std::string precision = "bf16";
  std::string preset = "tiny";
  int64_t seed = 0;
  moeserve::FlagSet flags(
      "moeserve-make-tiny-model --out DIR [--arch deepseek_v3|deepseek_v2] "
      "[--precision bf16|fp8] [--seed N] [--preset tiny|bench-1b]",
      "Writes a random model in the Hugging Face layout of DeepSeek-V3/V2 checkpoints "
      "(config.json, sharded safetensors + index, tokenizer.json, tokenizer_config.json, "
      "generation_config.json). Deterministic for a given seed.\n\n" +
          preset_table());
  flags.add_string("out", &out_dir, "output folder (created if missing)");
  flags.add_string("arch", &arch, "deepseek_v3 or deepseek_v2");
  flags.add_string("precision", &precision, "bf16, or fp8 (128x128 block scales)");
  flags.add_string("preset", &preset, "tiny or bench-1b");
  flags.add_int("seed", &seed, "random seed");
  const moeserve::Status parsed = flags.parse(std::vector<std::string>(argv + 1, argv + argc));
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (!parsed.ok()) {
    std::cerr << parsed.to_string() << "\n";
    return 2;
  }
  if (out_dir.empty()) {
    std::cerr << "--out is required\n";
    return 2;
  }
  TinyModelOptions options;
  auto a = moeserve::model::parse_architecture_flag(arch);
  auto p = moeserve::model::parse_precision_flag(precision);
  auto s = moeserve::model::parse_preset_flag(preset);
  for (const moeserve::Status& status : {a.status(), p.status(), s.status()}) {
    if (!status.ok()) {
      std::cerr << status.to_string() << "\n";
      return 2;
    }
  }
  options.architecture = *a;
  options.precision = *p;
  options.preset = *s;
  options.seed = static_cast<uint64_t>(seed);
  const moeserve::Status written = moeserve::model::write_tiny_model(out_dir, options);
  if (!written.ok()) {
    std::cerr << written.to_string() << "\n";
    return 1;
  }
  moeserve::log::info("model written", {{"dir", out_dir},
                                        {"arch", arch},
                                        {"precision", precision},
                                        {"preset", preset},
                                        {"seed", seed}});
  return 0;
}
