// bench-decode: decode speed of the CPU engine against its memory-bandwidth floor,
// measured side by side in one run (DESIGN.md, Performance method).
//
// For each model (the generated DeepSeek-V3-shaped bench-1b preset in FP8 and BF16,
// written to a temporary folder, or --model DIR):
//   1. the floors on a pool of the engine's thread count (bench/floor.h): read bandwidth
//      (integer-add probe over 512 MiB with huge pages, median and best of 11 passes, next
//      to ../shared/tools/membw.c when its binary is found) and the FMA peak of the ISA;
//   2. active weight bytes per decode token (worker/model/active_bytes.h, at the
//      precision config.json declares): every attention projection, dense MLPs, router,
//      shared experts, num_experts_per_tok routed experts per MoE layer, norms, one
//      embedding row and lm_head;
//   3. prefill of --prompt-tokens tokens: tokens/s and the weight-matmul GFLOP/s it
//      implies (2 per weight per token) against the FMA peak;
//   4. single-stream decode tokens/s after that prompt; the floor is
//      read bandwidth (median) / active bytes, and achieved / floor is printed;
//   5. batched decode: aggregate tokens/s with 1, 4 and 16 sequences decoding together,
//      each against its own floor: the fixed weights plus the distinct routed experts
//      the batch actually chose (read once per step whatever the batch), and against the
//      FMA peak (2 flops per active weight per token), whichever is lower.
// Weights are copied into huge pages as the worker does on one rank (--weight-memory
// mapped: left in the page cache, to measure what the copy buys).
// Usage: bench-decode [--model DIR] [--threads N] [--steps N] [--prompt-tokens N]
//                     [--prefill-rounds N] [--precision fp8|bf16|both] [--weight-memory
//                     copied|mapped]
//                     [--isa NAME]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bench/floor.h"
#include "common/flags.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"
#include "worker/model/active_bytes.h"
#include "worker/model/weights.h"

namespace {

using namespace moeserve;
using Clock = std::chrono::steady_clock;

constexpr int64_t kBatchPromptTokens = 8;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> prompt_of(int64_t n, int64_t vocab, int64_t salt) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i)
    ids.push_back(static_cast<int32_t>((i * 131 + salt * 7919 + 3) % vocab));
  return ids;
}

struct DecodeRun {
  double tokens_per_s = 0;
  double distinct_experts_per_step = 0;  // summed over MoE layers, mean over steps
};

// Aggregate decode tokens/s of `batch` sequences stepping together for `steps` steps,
// and how many distinct routed experts each step read.
StatusOr<DecodeRun> run_decode(engine::Engine& engine, int64_t batch, int64_t prompt_tokens,
                               int64_t steps) {
  const int64_t vocab = engine.config().vocab_size;
  std::vector<engine::SequenceKv> seqs(batch);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<engine::SequenceInput> inputs;
  for (int64_t s = 0; s < batch; ++s) prompts.push_back(prompt_of(prompt_tokens, vocab, s));
  for (int64_t s = 0; s < batch; ++s) inputs.push_back({&seqs[s], prompts[s], false});
  engine::ForwardOutput out;
  Status status = engine.forward(inputs, &out);
  std::vector<int32_t> next(batch);
  double elapsed = 0;
  int64_t distinct = 0;
  for (int64_t step = 0; status.ok() && step <= steps; ++step) {
    inputs.clear();
    for (int64_t s = 0; s < batch; ++s) {
      next[s] = engine::argmax(out.row(s), static_cast<int32_t>(vocab));
      inputs.push_back({&seqs[s], std::span<const int32_t>(&next[s], 1), false});
    }
    const auto start = Clock::now();
    status = engine.forward(inputs, &out);
    if (step == 0) continue;  // warm-up
    elapsed += seconds_since(start);
    for (const engine::LayerRouting& layer : out.routing) {
      distinct += static_cast<int64_t>(
          std::set<int32_t>(layer.routing.experts.begin(), layer.routing.experts.end()).size());
    }
  }
  for (auto& seq : seqs) engine.kv_cache().release(seq);
  if (!status.ok()) return status;
  return DecodeRun{static_cast<double>(batch * steps) / elapsed,
                   static_cast<double>(distinct) / static_cast<double>(steps)};
}

// Median tokens/s of a `prompt_tokens`-token prefill of a fresh sequence, over `rounds` runs.
StatusOr<double> run_prefill(engine::Engine& engine, int64_t prompt_tokens, int rounds) {
  const std::vector<int32_t> prompt = prompt_of(prompt_tokens, engine.config().vocab_size, 99);
  std::vector<double> rates;
  for (int round = 0; round <= rounds; ++round) {
    engine::SequenceKv seq;
    engine::ForwardOutput out;
    const auto start = Clock::now();
    const Status status = engine.forward({{&seq, prompt, false}}, &out);
    const double s = seconds_since(start);
    engine.kv_cache().release(seq);
    if (!status.ok()) return status;
    if (round > 0) rates.push_back(static_cast<double>(prompt_tokens) / s);  // 0: warm-up
  }
  return bench::median_of(rates);
}

struct BenchSettings {
  int threads = 2;
  int64_t steps = 32;
  int64_t prompt_tokens = 64;
  int prefill_rounds = 3;
  model::WeightMemory memory = model::WeightMemory::kCopied;
};

Status bench_model(const std::string& dir, const std::string& label, const BenchSettings& run) {
  std::fprintf(stderr, "[%s] loading %s\n", label.c_str(), dir.c_str());
  MOESERVE_ASSIGN_OR_RETURN(
      model::LoadedModel loaded,
      model::load_model(dir, model::BindOptions{.load_mtp = false, .memory = run.memory}));
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded));
  const model::ModelConfig& c = shared->config;
  const model::ActiveWeightBytes active = model::active_weight_bytes(c, model::weight_precision(c));
  const double mib = 1024.0 * 1024.0;
  std::printf("\n== %s: %s\n", label.c_str(), dir.c_str());
  std::printf("weights bound: %.1f MiB (%s); active per token: %.2f MiB\n",
              shared->weights.bound_bytes / mib,
              shared->weights.copied_storage ? "copied into huge pages" : "mapped",
              active.total() / mib);
  std::printf(
      "  attention %.2f, dense MLP %.2f, shared experts %.2f, routed experts %.2f, router %.2f, "
      "norms %.3f, embedding row %.4f, lm_head %.2f (MiB)\n",
      active.attention / mib, active.dense_mlp / mib, active.shared_experts / mib,
      active.routed_experts / mib, active.router / mib, active.norms / mib,
      active.embedding_row / mib, active.lm_head / mib);

  engine::EngineOptions options;
  options.threads = run.threads;
  options.record_routing = true;
  const auto blocks = [](int64_t tokens) {
    return (tokens + engine::kBlockSize - 1) / engine::kBlockSize * engine::kBlockSize;
  };
  options.kv_cache_tokens = 16 * blocks(kBatchPromptTokens + run.steps + 2) +
                            2 * blocks(run.prompt_tokens + run.steps + 2);
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(shared, options));

  // The floors, on a pool of the engine's size, just before the runs they judge.
  kernels::ThreadPool pool(run.threads);
  std::fprintf(stderr, "[%s] read bandwidth and FMA peak on %d threads\n", label.c_str(),
               pool.size());
  const bench::ReadBandwidth bw = bench::measure_read_bandwidth(pool);
  const bench::ReadBandwidth membw = bench::run_membw(pool.size());
  bench::print_bandwidth("", pool.size(), bw, membw);
  const double peak_gflops = bench::measure_fma_peak_gflops(pool);
  std::printf("FMA peak (%s, %d threads, registers only): %.1f GFLOP/s\n",
              kernels::isa_name(kernels::active_isa()), pool.size(), peak_gflops);

  // Prefill: weight matmul flops (2 per weight the token multiplies; lm_head once per
  // prompt) against the FMA peak. Attention scores and softmax are not counted.
  const model::ActiveWeightBytes elements2 =
      model::active_weight_bytes(c, model::WeightPrecision::kBf16);
  const double matmul_weights_per_token =
      static_cast<double>(elements2.attention + elements2.dense_mlp + elements2.shared_experts +
                          elements2.routed_experts + elements2.router) /
      2.0;
  const double prompt_flops =
      2.0 * (matmul_weights_per_token * static_cast<double>(run.prompt_tokens) +
             static_cast<double>(elements2.lm_head) / 2.0);
  std::fprintf(stderr, "[%s] prefill, %lld tokens\n", label.c_str(),
               static_cast<long long>(run.prompt_tokens));
  MOESERVE_ASSIGN_OR_RETURN(const double prefill_tps,
                            run_prefill(*engine, run.prompt_tokens, run.prefill_rounds));
  const double prefill_gflops =
      prompt_flops / (static_cast<double>(run.prompt_tokens) / prefill_tps) / 1e9;
  std::printf(
      "prefill %lld tokens (%d threads): %.1f tokens/s, %.1f GFLOP/s of matmul; "
      "achieved/peak %.1f %%\n",
      static_cast<long long>(run.prompt_tokens), run.threads, prefill_tps, prefill_gflops,
      100.0 * prefill_gflops / peak_gflops);

  std::fprintf(stderr, "[%s] single-stream decode, %lld steps\n", label.c_str(),
               static_cast<long long>(run.steps));
  MOESERVE_ASSIGN_OR_RETURN(DecodeRun single, run_decode(*engine, 1, run.prompt_tokens, run.steps));
  const double floor = bw.median_gbs * 1e9 / static_cast<double>(active.total());
  // A decode token multiplies every active weight once (lm_head included): the tokens/s
  // the FMA peak allows, the ceiling of steps whose weights are reused across many tokens.
  const double decode_flops_per_token =
      2.0 * (matmul_weights_per_token + static_cast<double>(elements2.lm_head) / 2.0);
  const double compute_ceiling = peak_gflops * 1e9 / decode_flops_per_token;
  std::printf(
      "single-stream decode (%d threads): %.2f tokens/s; floor %.2f tokens/s "
      "(read median %.2f GB/s / %.2f MiB); achieved/floor %.1f %%\n",
      run.threads, single.tokens_per_s, floor, bw.median_gbs, active.total() / mib,
      100.0 * single.tokens_per_s / floor);
  // Batched: the routed experts read per step are the distinct experts the batch chose.
  const int64_t moe_layers = static_cast<int64_t>(
      std::count_if(shared->weights.layers.begin(), shared->weights.layers.end(),
                    [](const model::DecoderLayer& l) { return l.is_moe; }));
  const double expert_bytes = static_cast<double>(active.routed_experts) /
                              static_cast<double>(moe_layers * c.num_experts_per_tok);
  const double fixed_bytes = static_cast<double>(active.total() - active.routed_experts);
  double batch1 = 0;
  for (int64_t batch : {1, 4, 16}) {
    std::fprintf(stderr, "[%s] batched decode, batch %lld\n", label.c_str(),
                 static_cast<long long>(batch));
    MOESERVE_ASSIGN_OR_RETURN(DecodeRun result,
                              run_decode(*engine, batch, kBatchPromptTokens, run.steps));
    if (batch == 1) batch1 = result.tokens_per_s;
    const double step_bytes = fixed_bytes + result.distinct_experts_per_step * expert_bytes;
    const double batch_floor = batch * bw.median_gbs * 1e9 / step_bytes;
    const double ceiling = std::min(batch_floor, compute_ceiling);
    std::printf(
        "batched decode: batch %2lld  %8.2f tokens/s aggregate (%.2fx batch 1); %.1f distinct "
        "experts/step -> %.1f MiB/step, floor %.2f tokens/s, achieved/floor %.1f %%; "
        "FMA-peak ceiling %.2f tokens/s, achieved/min(floor, ceiling) %.1f %% (%s-bound)\n",
        static_cast<long long>(batch), result.tokens_per_s, result.tokens_per_s / batch1,
        result.distinct_experts_per_step, step_bytes / mib, batch_floor,
        100.0 * result.tokens_per_s / batch_floor, compute_ceiling,
        100.0 * result.tokens_per_s / ceiling,
        batch_floor <= compute_ceiling ? "memory" : "compute");
  }
  std::fflush(stdout);
  return ok_status();
}

int run(int argc, char** argv) {
  std::string model_dir;
  std::string precision = "both";
  int64_t threads = 2;
  int64_t steps = 32;
  int64_t prompt_tokens = 64;
  int64_t prefill_rounds = 3;
  std::string weight_memory = "copied";
  std::string isa_text = kernels::isa_name(kernels::active_isa());
  FlagSet flags(
      "bench-decode [--model DIR] [--threads N] [--steps N] [--prompt-tokens N] "
      "[--prefill-rounds N] [--precision fp8|bf16|both] [--weight-memory copied|mapped] "
      "[--isa NAME]",
      "Decode tokens/s against the memory-bandwidth floor, single-stream and batched.");
  flags.add_string("model", &model_dir, "model folder; default: generate bench-1b models");
  flags.add_string("precision", &precision, "generated models: fp8, bf16 or both");
  flags.add_int("threads", &threads, "compute threads");
  flags.add_int("steps", &steps, "timed decode steps per measurement");
  flags.add_int("prompt-tokens", &prompt_tokens,
                "prompt length of the timed prefill and of single-stream decode");
  flags.add_int("prefill-rounds", &prefill_rounds,
                "timed prefills (after one warm-up) whose median is reported");
  flags.add_string("weight-memory", &weight_memory,
                   "copied (into huge pages, as the worker on one rank) or mapped (page cache)");
  flags.add_string("isa", &isa_text,
                   "kernel instruction set: scalar, avx2, avx512, avx512vbmi or avx512bf16 "
                   "(default: the best this CPU has)");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  const std::optional<kernels::Isa> isa = kernels::isa_from_name(isa_text);
  if (!isa || kernels::set_isa_for_testing(*isa) != *isa) {
    std::fprintf(stderr, "bench-decode: --isa %s is unknown or this CPU lacks it\n",
                 isa_text.c_str());
    return 2;
  }
  const std::optional<model::WeightMemory> memory = model::parse_weight_memory(weight_memory);
  if (!memory) {
    std::fprintf(stderr, "bench-decode: --weight-memory must be copied or mapped\n");
    return 2;
  }

  if (threads < 1 || steps < 1 || prompt_tokens < 1 || prefill_rounds < 1) {
    std::fprintf(stderr,
                 "bench-decode: --threads, --steps, --prompt-tokens and --prefill-rounds must "
                 "be >= 1\n");
    return 2;
  }
  const BenchSettings settings{.threads = static_cast<int>(threads),
                               .steps = steps,
                               .prompt_tokens = prompt_tokens,
                               .prefill_rounds = static_cast<int>(prefill_rounds),
                               .memory = *memory};
  if (!model_dir.empty()) {
    const Status s = bench_model(model_dir, "model", settings);
    if (!s.ok()) std::fprintf(stderr, "bench-decode: %s\n", s.to_string().c_str());
    return s.ok() ? 0 : 1;
  }
  std::vector<model::WeightPrecision> precisions;
  if (precision == "fp8" || precision == "both") precisions.push_back(model::WeightPrecision::kFp8);
  if (precision == "bf16" || precision == "both")
    precisions.push_back(model::WeightPrecision::kBf16);
  if (precisions.empty()) {
    std::fprintf(stderr, "--precision: expected fp8, bf16 or both\n");
    return 2;
  }
  char tmpl[] = "/tmp/bench-decode-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  int code = 0;
  for (model::WeightPrecision p : precisions) {
    const std::string label = p == model::WeightPrecision::kFp8 ? "bench-1b fp8" : "bench-1b bf16";
    const std::string dir =
        std::string(tmpl) + (p == model::WeightPrecision::kFp8 ? "/fp8" : "/bf16");
    std::fprintf(stderr, "[%s] writing the model to %s (a few minutes)\n", label.c_str(),
                 dir.c_str());
    fixtures::TinyModelOptions options{.architecture = model::Architecture::kDeepseekV3,
                                       .precision = p,
                                       .seed = 1,
                                       .preset = fixtures::TinyPreset::kBench1b};
    Status s = fixtures::write_tiny_model(dir, options);
    if (s.ok()) s = bench_model(dir, label, settings);
    if (!s.ok()) {
      std::fprintf(stderr, "bench-decode: %s\n", s.to_string().c_str());
      code = 1;
    }
    std::filesystem::remove_all(dir);
  }
  std::filesystem::remove_all(tmpl);
  return code;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
