// bench-decode: decode speed of the CPU engine against its memory-bandwidth floor,
// measured side by side in one run (DESIGN.md, Performance method).
//
// For each model (the generated DeepSeek-V3-shaped bench-1b preset in FP8 and BF16,
// written to a temporary folder, or --model DIR):
//   1. memory bandwidth on the same threads: read (vectorised dot over 256 MiB) and copy
//      (memcpy; read + written bytes);
//   2. active weight bytes per decode token (worker/model/active_bytes.h, at the
//      precision config.json declares): every attention projection, dense MLPs, router,
//      shared experts, num_experts_per_tok routed experts per MoE layer, norms, one
//      embedding row and lm_head;
//   3. single-stream decode tokens/s after a short prefill; the floor is
//      read bandwidth / active bytes, and achieved / floor is printed;
//   4. batched decode: aggregate tokens/s with 1, 4 and 16 sequences decoding together,
//      each against its own floor: the fixed weights plus the distinct routed experts
//      the batch actually chose (read once per step whatever the batch).
// Usage: bench-decode [--model DIR] [--threads N] [--steps N] [--precision fp8|bf16|both]
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

#include "common/flags.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"
#include "worker/model/active_bytes.h"
#include "worker/model/weights.h"

namespace {

using namespace moeserve;
using Clock = std::chrono::steady_clock;

constexpr int64_t kBandwidthBytes = int64_t{256} << 20;
constexpr int64_t kPromptTokens = 16;
constexpr int64_t kBatchPromptTokens = 8;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Bandwidth {
  double read_gbs = 0;
  double copy_gbs = 0;
};

// Best of a few passes, each over the whole buffer split across the pool.
Bandwidth measure_bandwidth(kernels::ThreadPool& pool) {
  const int64_t floats = kBandwidthBytes / 4;
  std::vector<float> src(floats, 1.0f), dst(floats, 0.0f);
  for (int64_t i = 0; i < floats; ++i) src[i] = static_cast<float>(i % 1000) * 1e-3f;
  const int parts = pool.size();
  std::vector<float> sinks(parts * 16, 0.0f);
  Bandwidth best;
  for (int pass = 0; pass < 5; ++pass) {
    auto start = Clock::now();
    pool.parallel_for(parts, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t lo = floats * p / parts, hi = floats * (p + 1) / parts;
        sinks[p * 16] += kernels::dot(src.data() + lo, src.data() + lo, hi - lo);
      }
    });
    best.read_gbs = std::max(best.read_gbs, kBandwidthBytes / seconds_since(start) / 1e9);
    start = Clock::now();
    pool.parallel_for(parts, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t lo = floats * p / parts, hi = floats * (p + 1) / parts;
        std::memcpy(dst.data() + lo, src.data() + lo, (hi - lo) * sizeof(float));
      }
    });
    best.copy_gbs = std::max(best.copy_gbs, 2.0 * kBandwidthBytes / seconds_since(start) / 1e9);
  }
  if (sinks[0] == -1.0f || dst[floats / 2] == -1.0f) std::fprintf(stderr, "unreachable\n");
  return best;
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

Status bench_model(const std::string& dir, const std::string& label, int threads, int64_t steps,
                   const Bandwidth& bw) {
  std::fprintf(stderr, "[%s] loading %s\n", label.c_str(), dir.c_str());
  MOESERVE_ASSIGN_OR_RETURN(model::LoadedModel loaded,
                            model::load_model(dir, model::BindOptions{.load_mtp = false}));
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded));
  const model::ModelConfig& c = shared->config;
  const model::ActiveWeightBytes active = model::active_weight_bytes(c, model::weight_precision(c));
  const double mib = 1024.0 * 1024.0;
  std::printf("\n== %s: %s\n", label.c_str(), dir.c_str());
  std::printf("weights bound: %.1f MiB; active per token: %.2f MiB\n",
              shared->weights.bound_bytes / mib, active.total() / mib);
  std::printf(
      "  attention %.2f, dense MLP %.2f, shared experts %.2f, routed experts %.2f, router %.2f, "
      "norms %.3f, embedding row %.4f, lm_head %.2f (MiB)\n",
      active.attention / mib, active.dense_mlp / mib, active.shared_experts / mib,
      active.routed_experts / mib, active.router / mib, active.norms / mib,
      active.embedding_row / mib, active.lm_head / mib);

  engine::EngineOptions options;
  options.threads = threads;
  options.record_routing = true;
  const auto blocks = [](int64_t tokens) {
    return (tokens + engine::kBlockSize - 1) / engine::kBlockSize * engine::kBlockSize;
  };
  options.kv_cache_tokens =
      16 * blocks(kBatchPromptTokens + steps + 2) + blocks(kPromptTokens + steps + 2);
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(shared, options));

  std::fprintf(stderr, "[%s] single-stream decode, %lld steps\n", label.c_str(),
               static_cast<long long>(steps));
  MOESERVE_ASSIGN_OR_RETURN(DecodeRun single, run_decode(*engine, 1, kPromptTokens, steps));
  const double floor = bw.read_gbs * 1e9 / static_cast<double>(active.total());
  std::printf(
      "single-stream decode (%d threads): %.2f tokens/s; floor %.2f tokens/s "
      "(read %.2f GB/s / %.2f MiB); achieved/floor %.1f %%\n",
      threads, single.tokens_per_s, floor, bw.read_gbs, active.total() / mib,
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
    MOESERVE_ASSIGN_OR_RETURN(DecodeRun run, run_decode(*engine, batch, kBatchPromptTokens, steps));
    if (batch == 1) batch1 = run.tokens_per_s;
    const double step_bytes = fixed_bytes + run.distinct_experts_per_step * expert_bytes;
    const double batch_floor = batch * bw.read_gbs * 1e9 / step_bytes;
    std::printf(
        "batched decode: batch %2lld  %8.2f tokens/s aggregate (%.2fx batch 1); %.1f distinct "
        "experts/step -> %.1f MiB/step, floor %.2f tokens/s, achieved/floor %.1f %%\n",
        static_cast<long long>(batch), run.tokens_per_s, run.tokens_per_s / batch1,
        run.distinct_experts_per_step, step_bytes / mib, batch_floor,
        100.0 * run.tokens_per_s / batch_floor);
  }
  std::fflush(stdout);
  return ok_status();
}

int run(int argc, char** argv) {
  std::string model_dir;
  std::string precision = "both";
  int64_t threads = 2;
  int64_t steps = 32;
  FlagSet flags("bench-decode [--model DIR] [--threads N] [--steps N] [--precision fp8|bf16|both]",
                "Decode tokens/s against the memory-bandwidth floor, single-stream and batched.");
  flags.add_string("model", &model_dir, "model folder; default: generate bench-1b models");
  flags.add_string("precision", &precision, "generated models: fp8, bf16 or both");
  flags.add_int("threads", &threads, "compute threads");
  flags.add_int("steps", &steps, "timed decode steps per measurement");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;

  kernels::ThreadPool pool(static_cast<int>(threads));
  std::fprintf(stderr, "measuring memory bandwidth on %d threads\n", pool.size());
  const Bandwidth bw = measure_bandwidth(pool);
  std::printf("memory bandwidth (%d threads): read %.2f GB/s, copy %.2f GB/s (read + write)\n",
              pool.size(), bw.read_gbs, bw.copy_gbs);

  if (!model_dir.empty()) {
    const Status s = bench_model(model_dir, "model", static_cast<int>(threads), steps, bw);
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
    if (s.ok()) s = bench_model(dir, label, static_cast<int>(threads), steps, bw);
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
