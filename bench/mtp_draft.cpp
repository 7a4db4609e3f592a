// bench-mtp-draft: the MTP drafter's cost per step against a main decode step, the
// "draft cost" c of speculative decoding's bandwidth-bound prediction
// (1 + accepted) / (1 + c), measured side by side in one run (DESIGN.md, Performance
// method).
//
// On the generated bench-1b preset (FP8 by default) whose MTP module agrees with the main
// model on --agreement of the tokens (tools/fixtures/tiny_model.h), or on --model DIR: a
// single-stream greedy decode of the main model alone, each step one main forward (with
// its final hidden states) then one MtpDrafter step drafting k tokens (catch-up row and
// draft 1 in one MTP forward, k - 1 chained ones), both timed. Prints, for k = 1..3, the
// weight bytes a main decode step and an MTP position read (their ratio is the
// bandwidth-bound draft cost per draft), the mean main step and draft step times, their
// ratio c, the drafts' acceptance against the
// tokens the main model went on to produce (each step's agreeing prefix, per step), and
// the prediction (1 + accepted) / (1 + c), which takes verifying k drafts to cost one
// decode step (bandwidth-bound).
// Usage: bench-mtp-draft [--model DIR] [--threads N] [--steps N] [--agreement A]
//                        [--precision fp8|bf16]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/flags.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/drafter_factory.h"
#include "worker/engine/engine.h"
#include "worker/engine/mtp_drafter.h"
#include "worker/engine/sampler.h"
#include "worker/engine/scheduler.h"
#include "worker/model/active_bytes.h"
#include "worker/model/weights.h"

namespace {

using namespace moeserve;
using Clock = std::chrono::steady_clock;

constexpr int64_t kPromptTokens = 16;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct DraftRun {
  double main_step_s = 0;   // mean main decode forward
  double draft_step_s = 0;  // mean MtpDrafter::step
  double accepted_per_step = 0;
};

StatusOr<DraftRun> run_decode(engine::Engine& engine, int32_t k, int64_t steps) {
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::MtpDrafter> drafter,
                            engine::MtpDrafter::create(&engine));
  const int32_t vocab = static_cast<int32_t>(engine.config().vocab_size);
  const engine::SamplingParams greedy;
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < kPromptTokens; ++i)
    tokens.push_back(static_cast<int32_t>(i * 37 % vocab));
  engine::SequenceKv kv;
  engine::ForwardOutput out;
  std::vector<int32_t> input = tokens;
  std::vector<std::vector<int32_t>> drafts;
  DraftRun run;
  for (int64_t step = 0; step <= steps; ++step) {
    const auto main_start = Clock::now();
    const int64_t from = kv.length;
    MOESERVE_RETURN_IF_ERROR(engine.forward(
        {engine::SequenceInput{.kv = &kv, .tokens = input, .hidden_states = true}}, &out));
    const double main_s = seconds_since(main_start);
    tokens.push_back(engine::argmax(out.row(0), vocab));
    const engine::DraftInput in{.sequence = 1,
                                .tokens = tokens,
                                .committed = kv.length,
                                .hidden_from = from,
                                .hidden = out.hidden_row(0, 0),
                                .max_draft = k,
                                .sampling = &greedy};
    std::vector<engine::Draft> draft;
    const auto draft_start = Clock::now();
    MOESERVE_RETURN_IF_ERROR(drafter->step({&in, 1}, &draft));
    const double draft_s = seconds_since(draft_start);
    drafts.push_back(draft[0].tokens);
    input = {tokens.back()};
    if (step == 0) continue;  // the prefill and the catch-up over the prompt
    run.main_step_s += main_s;
    run.draft_step_s += draft_s;
  }
  run.main_step_s /= static_cast<double>(steps);
  run.draft_step_s /= static_cast<double>(steps);
  // drafts[s] proposes tokens[kPromptTokens + s + 1 ...].
  int64_t accepted = 0, scored = 0;
  for (size_t s = 0; s < drafts.size(); ++s) {
    const size_t first = kPromptTokens + s + 1;
    if (first + drafts[s].size() > tokens.size()) break;
    ++scored;
    for (size_t d = 0; d < drafts[s].size() && drafts[s][d] == tokens[first + d]; ++d) ++accepted;
  }
  run.accepted_per_step = scored == 0 ? 0.0 : static_cast<double>(accepted) / scored;
  drafter->release(1);
  engine.kv_cache().release(kv);
  return run;
}

// Weight bytes one MTP position reads: eh_proj, the block (attention, router, shared
// experts, num_experts_per_tok routed experts) and shared_head.head; norms are noise.
int64_t mtp_position_bytes(const model::MtpLayer& m, int64_t experts_per_token) {
  auto mlp = [](const model::Mlp& x) {
    return x.gate_proj.bytes() + x.up_proj.bytes() + x.down_proj.bytes();
  };
  const model::Attention& a = m.block.self_attn;
  size_t bytes = m.eh_proj.bytes() + m.shared_head_head.bytes() + a.q_a_proj.bytes() +
                 a.q_b_proj.bytes() + a.q_proj.bytes() + a.kv_a_proj_with_mqa.bytes() +
                 a.kv_b_proj.bytes() + a.o_proj.bytes();
  if (m.block.is_moe) {
    bytes += m.block.moe.gate.bytes() + mlp(m.block.moe.shared_experts) +
             static_cast<size_t>(experts_per_token) * mlp(m.block.moe.experts.front());
  } else {
    bytes += mlp(m.block.mlp);
  }
  return static_cast<int64_t>(bytes);
}

struct ServedRun {
  double tokens_per_s = 0;  // decode tokens/s after the first token
  double acceptance = 0;    // accepted / drafted
  int64_t drafts = 0;       // draft tokens verified (the per-step switch cuts them)
  int64_t tokens = 0;       // tokens generated
};

// One greedy request of `steps` tokens through the Scheduler (the loop `serve` runs),
// speculating with an MtpDrafter when k > 0; the clock starts at the first token.
StatusOr<ServedRun> run_served(const std::shared_ptr<const model::LoadedModel>& model,
                               const engine::EngineOptions& eo, int32_t k, int64_t steps) {
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(model, eo));
  engine::SchedulerOptions so;
  so.prefix_caching = false;
  if (k > 0) {
    MOESERVE_ASSIGN_OR_RETURN(so.drafter,
                              engine::make_drafter(engine::SpeculativeMethod::kMtp, *engine));
    so.num_draft_tokens = k;
  }
  engine::Scheduler scheduler(std::move(engine), so);
  engine::GenerationRequest r;
  for (int64_t i = 0; i < kPromptTokens; ++i)
    r.prompt.push_back(static_cast<int32_t>(i * 53 % 997));
  r.max_tokens = steps + 1;
  MOESERVE_ASSIGN_OR_RETURN(std::shared_ptr<engine::RequestStream> stream, scheduler.submit(r));
  scheduler.start();
  int64_t tokens = 0;
  Clock::time_point first;
  while (!stream->done()) {
    for (const engine::GenerationEvent& e : stream->next(std::chrono::milliseconds(20))) {
      if (!e.has_token) continue;
      if (tokens++ == 0) first = Clock::now();
    }
  }
  const double seconds = seconds_since(first);
  const engine::SchedulerStats stats = scheduler.stats();
  scheduler.stop();
  ServedRun run;
  run.tokens_per_s = static_cast<double>(tokens - 1) / seconds;
  run.drafts = stats.spec_draft_tokens_total;
  run.tokens = tokens;
  if (stats.spec_draft_tokens_total > 0) {
    run.acceptance = static_cast<double>(stats.spec_accepted_tokens_total) /
                     static_cast<double>(stats.spec_draft_tokens_total);
  }
  return run;
}

Status bench_model(const std::string& dir, int threads, int64_t steps) {
  std::fprintf(stderr, "loading %s\n", dir.c_str());
  MOESERVE_ASSIGN_OR_RETURN(model::LoadedModel loaded,
                            model::load_model(dir, model::BindOptions{.load_mtp = true}));
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded));
  engine::EngineOptions options;
  options.threads = threads;
  options.kv_cache_tokens = kPromptTokens + steps + 64;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(shared, options));
  std::printf("%s, %d threads, %lld timed steps\n", dir.c_str(), threads,
              static_cast<long long>(steps));
  const model::ModelConfig& config = shared->config;
  const int64_t main_bytes =
      model::active_weight_bytes(config, model::weight_precision(config)).total();
  const int64_t mtp_bytes =
      mtp_position_bytes(shared->weights.mtp.front(), config.num_experts_per_tok);
  std::printf(
      "weights read per position: main decode step %.2f MiB, MTP position %.2f MiB; "
      "bandwidth-bound draft cost per draft %.3f\n",
      main_bytes / 1048576.0, mtp_bytes / 1048576.0,
      static_cast<double>(mtp_bytes) / static_cast<double>(main_bytes));
  double draft_cost_k1 = 0;
  for (int32_t k = 1; k <= 3; ++k) {
    MOESERVE_ASSIGN_OR_RETURN(const DraftRun run, run_decode(*engine, k, steps));
    const double c = run.draft_step_s / run.main_step_s;
    if (k == 1) draft_cost_k1 = c;
    std::printf(
        "k=%d: main decode step %.2f ms, MTP draft step %.2f ms, draft cost c = %.3f; accepted "
        "%.2f of %d drafts per step; bandwidth-bound prediction (1 + accepted) / (1 + c) = "
        "%.2fx\n",
        k, 1e3 * run.main_step_s, 1e3 * run.draft_step_s, c, run.accepted_per_step, k,
        (1.0 + run.accepted_per_step) / (1.0 + c));
  }
  MOESERVE_ASSIGN_OR_RETURN(const ServedRun off, run_served(shared, options, 0, steps));
  MOESERVE_ASSIGN_OR_RETURN(const ServedRun on, run_served(shared, options, 1, steps));
  std::printf(
      "through the Scheduler, k=1: off %.2f tokens/s, mtp %.2f tokens/s (%.2fx), acceptance "
      "%.2f (%lld drafts verified over %lld tokens); prediction (1 + acceptance) / (1 + c) = "
      "%.2fx\n",
      off.tokens_per_s, on.tokens_per_s, on.tokens_per_s / off.tokens_per_s, on.acceptance,
      static_cast<long long>(on.drafts), static_cast<long long>(on.tokens),
      (1.0 + on.acceptance) / (1.0 + draft_cost_k1));
  std::fflush(stdout);
  return ok_status();
}

int run(int argc, char** argv) {
  std::string model_dir;
  std::string precision = "fp8";
  int64_t threads = 2;
  int64_t steps = 32;
  double agreement = 1.0;
  FlagSet flags(
      "bench-mtp-draft [--model DIR] [--threads N] [--steps N] [--agreement A] "
      "[--precision fp8|bf16]",
      "The MTP drafter's cost per step against a main decode step (single stream).");
  flags.add_string("model", &model_dir, "model folder; default: generate bench-1b");
  flags.add_string("precision", &precision, "generated model: fp8 or bf16");
  flags.add_int("threads", &threads, "compute threads");
  flags.add_int("steps", &steps, "timed decode steps per k");
  flags.add_double("agreement", &agreement, "generated model's mtp_agreement, in [0, 1]");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  if (!model_dir.empty()) {
    const Status s = bench_model(model_dir, static_cast<int>(threads), steps);
    if (!s.ok()) std::fprintf(stderr, "bench-mtp-draft: %s\n", s.to_string().c_str());
    return s.ok() ? 0 : 1;
  }
  auto p = fixtures::parse_precision_flag(precision);
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", p.status().to_string().c_str());
    return 2;
  }
  char tmpl[] = "/tmp/bench-mtp-draft-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::fprintf(stderr, "writing bench-1b (mtp_agreement %.2f) to %s (a few minutes)\n", agreement,
               tmpl);
  Status s = fixtures::write_tiny_model(tmpl, {.precision = *p,
                                               .seed = 1,
                                               .preset = fixtures::TinyPreset::kBench1b,
                                               .mtp_agreement = agreement});
  if (s.ok()) s = bench_model(tmpl, static_cast<int>(threads), steps);
  if (!s.ok()) std::fprintf(stderr, "bench-mtp-draft: %s\n", s.to_string().c_str());
  std::filesystem::remove_all(tmpl);
  return s.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
