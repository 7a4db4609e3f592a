// bench-speculative: decode tokens/s with speculative decoding on against off, measured
// side by side in one run (DESIGN.md, Performance method), through the Scheduler that
// `serve` and `generate` run.
//
// One model (a generated preset, tiny or bench-1b, at --precision, or --model DIR) is
// loaded once. Each measurement submits B greedy requests at once (distinct prompts,
// --tokens generated each, no stop tokens) and reports the aggregate generated tokens/s
// of the best of --repeats runs, plus the acceptance (accepted / drafted).
//   1. n-gram drafting (--speculative ngram) on a repetitive workload (prompts that
//      repeat a phrase), B in --batches, off against on with k = --k; the outputs are
//      checked to be identical.
//   2. The switch threshold: an oracle drafter that knows each request's greedy output
//      (from the off run) and proposes drafts that are right with probability a, for a
//      in {0, 0.5, 0.9, 1.0} and every B, with the per-step switch disabled (what
//      verification costs and gains by itself) and at the default switch.
//      Speculation pays where on / off > 1.
//   3. Step cost, the measurement behind SchedulerOptions::spec_max_batch
//      (docs/serving.md): Engine::forward alone over B sequences (context --context
//      tokens) with 1 token each (a decode step) and with 1 + k tokens each (a verify
//      step, logits for every position), interleaved, best of --steps; the KV cache is
//      truncated back after each. A verify step costs r(B) decode steps and yields
//      1 + a + ... + a^k tokens per sequence at per-draft acceptance a, so speculation
//      pays while that sum exceeds r(B); the best of minimums is robust to a loaded
//      machine, unlike the end-to-end ratios above.
//
// Usage: bench-speculative [--model DIR | --preset tiny|bench-1b] [--precision fp8|bf16]
//                          [--threads N] [--tokens N] [--k N] [--batches 1,8,32]
//                          [--repeats N] [--layers N] [--steps N] [--context N]
//                          [--sections 1,2,3]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/ngram_drafter.h"
#include "worker/engine/scheduler.h"
#include "worker/model/weights.h"

namespace {

using namespace moeserve;
using SteadyClock = std::chrono::steady_clock;

struct BenchFlags {
  std::string model;
  std::string preset = "tiny";
  std::string precision = "fp8";
  int64_t threads = 2;
  int64_t tokens = 64;
  int64_t k = 3;
  std::string batches = "1,8,32";
  int64_t repeats = 2;
  int64_t layers = 0;
  int64_t steps = 10;
  int64_t context = 64;
  std::string sections = "1,2,3";
};

// Proposes each request's known greedy continuation, each draft right with probability
// `acceptance` (a fixed hash of the sequence and position decides), wrong ones being
// the right token + 1.
class OracleDrafter final : public engine::Drafter {
 public:
  OracleDrafter(std::map<std::vector<int32_t>, std::vector<int32_t>> outputs, int64_t vocab,
                double acceptance)
      : outputs_(std::move(outputs)), vocab_(vocab), acceptance_(acceptance) {}

  std::string_view name() const override { return "oracle"; }
  bool needs_hidden() const override { return false; }
  Status step(std::span<const engine::DraftInput> inputs,
              std::vector<engine::Draft>* drafts) override {
    drafts->assign(inputs.size(), engine::Draft{});
    for (size_t i = 0; i < inputs.size(); ++i) {
      const engine::DraftInput& in = inputs[i];
      if (in.max_draft == 0) continue;
      for (const auto& [prompt, output] : outputs_) {
        if (prompt.size() > in.tokens.size() ||
            !std::equal(prompt.begin(), prompt.end(), in.tokens.begin())) {
          continue;
        }
        const size_t generated = in.tokens.size() - prompt.size();
        for (int32_t d = 0; d < in.max_draft && generated + d < output.size(); ++d) {
          const int32_t truth = output[generated + d];
          const bool right = unit_hash(in.sequence, generated + d) < acceptance_;
          (*drafts)[i].tokens.push_back(right ? truth : static_cast<int32_t>((truth + 1) % vocab_));
        }
        break;
      }
    }
    return ok_status();
  }
  void release(uint64_t) override {}

 private:
  static double unit_hash(uint64_t a, uint64_t b) {
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return static_cast<double>((x ^ (x >> 31)) >> 11) * 0x1.0p-53;
  }

  std::map<std::vector<int32_t>, std::vector<int32_t>> outputs_;
  int64_t vocab_;
  double acceptance_;
};

struct RunResult {
  double tokens_per_s = 0;
  double acceptance = 0;  // accepted / drafted, 0 when nothing was drafted
  int64_t drafted = 0;
  std::vector<std::vector<int32_t>> outputs;
};

// B requests at once through a fresh scheduler; the best of `repeats` runs.
RunResult run(const std::shared_ptr<const model::LoadedModel>& model, const BenchFlags& f,
              const std::vector<std::vector<int32_t>>& prompts, engine::SchedulerOptions so) {
  RunResult best;
  for (int64_t rep = 0; rep < f.repeats; ++rep) {
    engine::EngineOptions eo;
    eo.threads = static_cast<int>(f.threads);
    eo.kv_cache_tokens = static_cast<int64_t>(prompts.size()) * (256 + f.tokens + f.k);
    auto engine = engine::Engine::create(model, eo);
    if (!engine.ok()) {
      std::fprintf(stderr, "engine: %s\n", engine.status().to_string().c_str());
      std::exit(1);
    }
    so.max_num_seqs = static_cast<int64_t>(prompts.size());
    so.max_queue = static_cast<int64_t>(prompts.size());
    so.prefix_caching = false;
    engine::Scheduler scheduler(std::move(engine).value(), so);
    std::vector<std::shared_ptr<engine::RequestStream>> streams;
    for (const auto& prompt : prompts) {
      engine::GenerationRequest r;
      r.prompt = prompt;
      r.max_tokens = f.tokens;
      streams.push_back(*scheduler.submit(r));
    }
    // Prefill is not decode: the clock starts once every request has its first token.
    std::vector<std::vector<int32_t>> outputs(prompts.size());
    scheduler.start();
    auto read = [&](size_t i) {
      for (const engine::GenerationEvent& e : streams[i]->next(std::chrono::milliseconds(20))) {
        if (e.has_token) outputs[i].push_back(e.sample.token);
      }
    };
    for (size_t i = 0; i < streams.size(); ++i) {
      while (outputs[i].empty() && !streams[i]->done()) read(i);
    }
    const auto start = SteadyClock::now();
    int64_t at_start = 0;
    for (const auto& o : outputs) at_start += static_cast<int64_t>(o.size());
    for (size_t i = 0; i < streams.size(); ++i) {
      while (!streams[i]->done()) read(i);
    }
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    int64_t total = 0;
    for (const auto& o : outputs) total += static_cast<int64_t>(o.size());
    const engine::SchedulerStats stats = scheduler.stats();
    scheduler.stop();
    const double tps = static_cast<double>(total - at_start) / seconds;
    if (tps > best.tokens_per_s) {
      best.tokens_per_s = tps;
      best.drafted = stats.spec_draft_tokens_total;
      best.acceptance = stats.spec_draft_tokens_total > 0
                            ? static_cast<double>(stats.spec_accepted_tokens_total) /
                                  static_cast<double>(stats.spec_draft_tokens_total)
                            : 0.0;
      best.outputs = std::move(outputs);
    }
  }
  return best;
}

struct StepCost {
  double decode_s = 0;  // one token per sequence
  double verify_s = 0;  // 1 + k tokens per sequence
};

StepCost step_cost(const std::shared_ptr<const model::LoadedModel>& model, const BenchFlags& f,
                   int64_t batch) {
  engine::EngineOptions eo;
  eo.threads = static_cast<int>(f.threads);
  eo.kv_cache_tokens = batch * (f.context + f.k + 1 + engine::kBlockSize);
  auto created = engine::Engine::create(model, eo);
  if (!created.ok()) {
    std::fprintf(stderr, "engine: %s\n", created.status().to_string().c_str());
    std::exit(1);
  }
  engine::Engine& e = **created;
  const int64_t vocab = model->config.vocab_size;
  std::vector<engine::SequenceKv> seqs(batch);
  std::vector<std::vector<int32_t>> tokens(batch);
  engine::ForwardOutput out;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> prompt;
    for (int64_t t = 0; t < f.context; ++t) {
      prompt.push_back(static_cast<int32_t>((b * 131 + t * 17 + 5) % vocab));
    }
    for (int64_t t = 0; t <= f.k; ++t)
      tokens[b].push_back(static_cast<int32_t>((b + t * 7) % vocab));
    if (Status s = e.forward({engine::SequenceInput{&seqs[b], prompt}}, &out); !s.ok()) {
      std::fprintf(stderr, "prefill: %s\n", s.to_string().c_str());
      std::exit(1);
    }
  }
  auto time_step = [&](int64_t per_seq) {
    std::vector<engine::SequenceInput> in;
    for (int64_t b = 0; b < batch; ++b) {
      in.push_back({&seqs[b], std::span<const int32_t>(tokens[b].data(), per_seq), per_seq > 1});
    }
    const auto start = SteadyClock::now();
    if (Status s = e.forward(in, &out); !s.ok()) {
      std::fprintf(stderr, "forward: %s\n", s.to_string().c_str());
      std::exit(1);
    }
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    for (auto& seq : seqs) e.kv_cache().truncate(seq, f.context);
    return seconds;
  };
  StepCost best{1e30, 1e30};
  for (int64_t i = 0; i < f.steps; ++i) {
    best.decode_s = std::min(best.decode_s, time_step(1));
    best.verify_s = std::min(best.verify_s, time_step(1 + f.k));
  }
  return best;
}

// Prompts that repeat a phrase (each its own), the workload prompt lookup is for.
std::vector<std::vector<int32_t>> repetitive_prompts(int64_t count, int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t i = 0; i < count; ++i) {
    std::vector<int32_t> phrase;
    for (int64_t t = 0; t < 7; ++t)
      phrase.push_back(static_cast<int32_t>((i * 131 + t * 17 + 5) % vocab));
    std::vector<int32_t> prompt;
    for (int r = 0; r < 4; ++r) prompt.insert(prompt.end(), phrase.begin(), phrase.end());
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

std::shared_ptr<const model::LoadedModel> load(const BenchFlags& f, const std::string& tmp) {
  std::string dir = f.model;
  if (dir.empty()) {
    fixtures::TinyModelOptions options;
    options.precision = *fixtures::parse_precision_flag(f.precision);
    options.preset = *fixtures::parse_preset_flag(f.preset);
    options.num_hidden_layers = f.layers;
    options.seed = 11;
    dir = tmp;
    if (Status s = fixtures::write_tiny_model(dir, options); !s.ok()) {
      std::fprintf(stderr, "model: %s\n", s.to_string().c_str());
      std::exit(1);
    }
  }
  auto loaded = model::load_model(dir, model::BindOptions{.load_mtp = false});
  if (!loaded.ok()) {
    std::fprintf(stderr, "load: %s\n", loaded.status().to_string().c_str());
    std::exit(1);
  }
  return std::make_shared<const model::LoadedModel>(std::move(loaded).value());
}

}  // namespace

int main(int argc, char** argv) {
  BenchFlags f;
  FlagSet flags("bench-speculative [flags]",
                "Decode tokens/s with speculative decoding on against off (see the source).");
  flags.add_string("model", &f.model, "model folder (default: a generated preset)");
  flags.add_string("preset", &f.preset, "generated preset: tiny or bench-1b");
  flags.add_string("precision", &f.precision, "generated preset precision: fp8 or bf16");
  flags.add_int("threads", &f.threads, "engine threads");
  flags.add_int("tokens", &f.tokens, "tokens generated per request");
  flags.add_int("k", &f.k, "draft tokens per step");
  flags.add_string("batches", &f.batches, "concurrent requests, comma-separated");
  flags.add_int("repeats", &f.repeats, "runs per measurement (the best is reported)");
  flags.add_int("layers", &f.layers, "generated preset layers (0: the preset's)");
  flags.add_int("steps", &f.steps, "timed forwards per step kind (section 3)");
  flags.add_int("context", &f.context, "tokens of context per sequence (section 3)");
  flags.add_string("sections", &f.sections, "which sections to run, comma-separated");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  auto batches = parse_int_list(f.batches);
  auto sections = parse_int_list(f.sections);
  if (!batches.ok() || !sections.ok() || f.k < 1 || f.tokens < 2 || f.repeats < 1 || f.steps < 1 ||
      f.context < 1) {
    std::fprintf(stderr,
                 "--batches and --sections must be integers, --k >= 1, --tokens >= 2, "
                 "--repeats, --steps and --context >= 1\n");
    return 2;
  }
  auto section = [&](int64_t n) {
    return std::find(sections->begin(), sections->end(), n) != sections->end();
  };
  log::configure(log::Level::kWarn, log::Format::kJson);
  const std::string tmp =
      (std::filesystem::temp_directory_path() / ("bench-speculative-" + std::to_string(::getpid())))
          .string();
  const auto model = load(f, tmp);
  const int64_t vocab = model->config.vocab_size;
  std::printf("model %s %s, %lld layers, threads %lld, %lld tokens per request, k %lld\n",
              f.model.empty() ? f.preset.c_str() : f.model.c_str(), f.precision.c_str(),
              static_cast<long long>(model->config.num_hidden_layers),
              static_cast<long long>(f.threads), static_cast<long long>(f.tokens),
              static_cast<long long>(f.k));

  engine::SchedulerOptions off;
  off.max_num_batched_tokens = 4096;
  auto with = [&](std::shared_ptr<engine::Drafter> drafter, int64_t max_batch) {
    engine::SchedulerOptions so = off;
    so.drafter = std::move(drafter);
    so.num_draft_tokens = static_cast<int32_t>(f.k);
    so.spec_max_batch = max_batch;
    return so;
  };
  const int64_t no_switch = 1 << 20;
  const int64_t default_switch = engine::SchedulerOptions{}.spec_max_batch;

  if (section(1)) {
    std::printf("\n1. ngram on a repetitive workload (switch disabled)\n");
    std::printf("%6s %12s %12s %8s %11s %9s\n", "batch", "off tok/s", "ngram tok/s", "ratio",
                "acceptance", "same out");
  }
  for (int64_t b : *batches) {
    if (!section(1)) break;
    const auto prompts = repetitive_prompts(b, vocab);
    const RunResult base = run(model, f, prompts, off);
    const RunResult spec =
        run(model, f, prompts, with(std::make_shared<engine::NgramDrafter>(), no_switch));
    std::printf("%6lld %12.1f %12.1f %8.2f %11.2f %9s\n", static_cast<long long>(b),
                base.tokens_per_s, spec.tokens_per_s, spec.tokens_per_s / base.tokens_per_s,
                spec.acceptance, spec.outputs == base.outputs ? "yes" : "NO");
  }

  if (section(2)) {
    std::printf("\n2. oracle drafts right with probability a: on/off tokens/s ratio\n");
    std::printf("%6s %12s", "batch", "off tok/s");
    for (double a : {0.0, 0.5, 0.9, 1.0}) std::printf("   a=%.1f  a=%.1f,sw", a, a);
    std::printf("\n");
  }
  for (int64_t b : *batches) {
    if (!section(2)) break;
    const auto prompts = repetitive_prompts(b, vocab);
    const RunResult base = run(model, f, prompts, off);
    std::map<std::vector<int32_t>, std::vector<int32_t>> outputs;
    for (size_t i = 0; i < prompts.size(); ++i) outputs[prompts[i]] = base.outputs[i];
    std::printf("%6lld %12.1f", static_cast<long long>(b), base.tokens_per_s);
    for (double a : {0.0, 0.5, 0.9, 1.0}) {
      auto oracle = std::make_shared<OracleDrafter>(outputs, vocab, a);
      const RunResult raw = run(model, f, prompts, with(oracle, no_switch));
      const RunResult sw = run(model, f, prompts, with(oracle, default_switch));
      std::printf(" %7.2f %9.2f", raw.tokens_per_s / base.tokens_per_s,
                  sw.tokens_per_s / base.tokens_per_s);
    }
    std::printf("\n");
  }
  if (section(3)) {
    std::printf("\n3. step cost: verify (1 + k tokens per sequence) / decode (1 token)\n");
    std::printf("%6s %11s %11s %7s   predicted speedup (1 + a + .. + a^k) / r\n", "batch",
                "decode ms", "verify ms", "r");
    for (int64_t b : *batches) {
      const StepCost cost = step_cost(model, f, b);
      const double r = cost.verify_s / cost.decode_s;
      std::printf("%6lld %11.2f %11.2f %7.2f  ", static_cast<long long>(b), cost.decode_s * 1e3,
                  cost.verify_s * 1e3, r);
      for (double a : {0.0, 0.3, 0.5, 0.7, 0.9}) {
        double tokens = 0, power = 1;
        for (int64_t i = 0; i <= f.k; ++i, power *= a) tokens += power;
        std::printf("  a=%.1f %.2f", a, tokens / r);
      }
      std::printf("\n");
    }
  }
  std::filesystem::remove_all(tmp);
  return 0;
}
