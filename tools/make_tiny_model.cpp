// moeserve-make-tiny-model: writes a random DeepSeek-V2/V3 model folder in the Hugging
// Face layout (tools/fixtures/tiny_model.h). Flags -> write_tiny_model; nothing else.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/model/active_bytes.h"

namespace {

using moeserve::fixtures::ParameterCounts;
using moeserve::fixtures::TinyModelOptions;
using moeserve::model::WeightPrecision;

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
  for (auto preset :
       {moeserve::fixtures::TinyPreset::kTiny, moeserve::fixtures::TinyPreset::kBench1b,
        moeserve::fixtures::TinyPreset::kBench1b2}) {
    for (auto arch :
         {moeserve::model::Architecture::kDeepseekV3, moeserve::model::Architecture::kDeepseekV2}) {
      TinyModelOptions options;
      options.preset = preset;
      options.architecture = arch;
      auto config =
          moeserve::model::parse_config(moeserve::fixtures::tiny_model_config_json(options).dump());
      if (!config.ok()) return out + config.status().to_string() + "\n";
      const ParameterCounts c = moeserve::fixtures::count_parameters(*config);
      const int64_t fp8_bytes =
          moeserve::model::active_weight_bytes(*config, WeightPrecision::kFp8).total();
      const int64_t bf16_bytes =
          moeserve::model::active_weight_bytes(*config, WeightPrecision::kBf16).total();
      out += "  " + std::string(moeserve::fixtures::preset_name(preset)) + " " +
             config->model_type + ": hidden " + std::to_string(config->hidden_size) + ", " +
             std::to_string(config->num_hidden_layers) + " layers, " +
             std::to_string(config->n_routed_experts) + " experts top-" +
             std::to_string(config->num_experts_per_tok) + ", vocab " +
             std::to_string(config->vocab_size) + ": " + millions(c.total) + " params, " +
             millions(c.active_per_token) + " active/token (" + mib(fp8_bytes) + " fp8, " +
             mib(bf16_bytes) + " bf16 read per token), MTP " + millions(c.mtp) + "\n";
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
  TinyModelOptions options;
  moeserve::FlagSet flags(
      "moeserve-make-tiny-model --out DIR [--arch deepseek_v3|deepseek_v2] "
      "[--precision bf16|fp8] [--seed N] [--preset tiny|bench-1b|bench-1.2b] [--num-hidden-layers "
      "N] "
      "[--moe-layer-freq N] [--mtp-agreement A]",
      "Writes a random model in the Hugging Face layout of DeepSeek-V3/V2 checkpoints "
      "(config.json, sharded safetensors + index, tokenizer.json, tokenizer_config.json, "
      "generation_config.json). Deterministic for a given seed.\n\n" +
          preset_table());
  flags.add_string("out", &out_dir, "output folder (created if missing)");
  flags.add_string("arch", &arch, "deepseek_v3 or deepseek_v2");
  flags.add_string("precision", &precision, "bf16, or fp8 (128x128 block scales)");
  flags.add_string("preset", &preset, "tiny, bench-1b or bench-1.2b");
  flags.add_int("seed", &seed, "random seed");
  flags.add_int("num-hidden-layers", &options.num_hidden_layers,
                "decoder layers; 0 keeps the preset's");
  flags.add_int("moe-layer-freq", &options.moe_layer_freq,
                "config.json moe_layer_freq: layer i >= first_k_dense_replace is MoE when "
                "i % N == 0, dense otherwise");
  double mtp_agreement = 1.0;
  flags.add_double("mtp-agreement", &mtp_agreement,
                   "in [0, 1]: build the MTP module to agree with the main model on this "
                   "fraction of tokens (speculative acceptance about A; the main layers' "
                   "output projections are scaled down for it); omitted: random MTP weights");
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
  auto a = moeserve::fixtures::parse_architecture_flag(arch);
  auto p = moeserve::fixtures::parse_precision_flag(precision);
  auto s = moeserve::fixtures::parse_preset_flag(preset);
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
  if (flags.is_set("mtp-agreement")) options.mtp_agreement = mtp_agreement;
  const moeserve::Status written = moeserve::fixtures::write_tiny_model(out_dir, options);
  if (!written.ok()) {
    std::cerr << written.to_string() << "\n";
    return 1;
  }
  moeserve::log::info("model written", {{"dir", out_dir},
                                        {"arch", arch},
                                        {"precision", precision},
                                        {"preset", preset},
                                        {"seed", seed},
                                        {"moe_layer_freq", options.moe_layer_freq},
                                        {"mtp_agreement", options.mtp_agreement.has_value()
                                                              ? std::to_string(mtp_agreement)
                                                              : "random"}});
  return 0;
}
