#include "worker/engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/worker/engine/reference_generate.h"

namespace moeserve::engine {
namespace {

using testing::reference_processed;

std::vector<float> random_logits(int32_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> logits(n);
  for (float& v : logits) v = dist(gen);
  return logits;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<double> frequencies(Sampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) {
    counts[sampler.sample(logits.data(), static_cast<int32_t>(logits.size()), {}).token] += 1.0;
  }
  for (double& c : counts) c /= draws;
  return counts;
}

TEST(SamplerTest, ValidateNamesTheBadParameter) {
  EXPECT_TRUE(validate(SamplingParams{}).ok());
  SamplingParams p;
  p.temperature = -1.0;
  EXPECT_NE(validate(p).message().find("temperature"), std::string::npos);
  p = SamplingParams{};
  p.top_p = 0.0;
  EXPECT_NE(validate(p).message().find("top_p"), std::string::npos);
  p = SamplingParams{};
  p.top_k = -2;
  EXPECT_NE(validate(p).message().find("top_k"), std::string::npos);
  p = SamplingParams{};
  p.top_logprobs = kMaxTopLogprobs + 1;
  EXPECT_NE(validate(p).message().find("top_logprobs"), std::string::npos);
}

TEST(RngTest, SameSeedSameStreamDifferentSeedDifferentStream) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    EXPECT_NE(x, c.next());
  }
  Rng u(7);
  double sum = 0.0;
  for (int i = 0; i < 10000; ++i) {
    const double v = u.uniform();
    ASSERT_GE(v, 0.0);
    ASSERT_LT(v, 1.0);
    sum += v;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

TEST(SamplerTest, GreedyPicksTheArgmaxAndTiesGoToTheLowerId) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  Sampler sampler(SamplingParams{});
  EXPECT_EQ(sampler.sample(logits.data(), 5, {}).token, 1);
  auto random = random_logits(1000, 3);
  int32_t best = 0;
  for (int32_t i = 0; i < 1000; ++i) best = random[i] > random[best] ? i : best;
  EXPECT_EQ(sampler.sample(random.data(), 1000, {}).token, best);
}

TEST(SamplerTest, LogprobsAreLogSoftmaxOfTheRawLogits) {
  const auto logits = random_logits(500, 11);
  SamplingParams params;
  params.temperature = 0.7;
  params.top_logprobs = 5;
  params.seed = 9;
  Sampler sampler(params);
  const SampleResult r = sampler.sample(logits.data(), 500, {});

  double max = logits[0];
  for (float v : logits) max = std::max<double>(max, v);
  double sum = 0.0;
  for (float v : logits) sum += std::exp(v - max);
  auto reference = [&](int32_t t) { return logits[t] - max - std::log(sum); };

  EXPECT_NEAR(r.logprob, reference(r.token), 1e-5);
  EXPECT_NEAR(token_logprob(logits.data(), 500, 17), reference(17), 1e-5);
  ASSERT_EQ(r.top.size(), 5u);
  std::vector<int32_t> ids(500);
  for (int32_t i = 0; i < 500; ++i) ids[i] = i;
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r.top[i].token, ids[i]);
    EXPECT_NEAR(r.top[i].logprob, reference(ids[i]), 1e-5);
  }
}

TEST(SamplerTest, TemperatureSamplingFollowsTheScaledSoftmax) {
  const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
  SamplingParams params;
  params.temperature = 0.5;  // squares the probabilities before renormalising
  params.seed = 1;
  Sampler sampler(params);
  const auto freq = frequencies(sampler, logits_of(probs), 40000);
  const double z = 0.16 + 0.09 + 0.04 + 0.01;
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(freq[i], probs[i] * probs[i] / z, 0.01);
}

TEST(SamplerTest, TopKKeepsOnlyTheKMostLikelyTokens) {
  const std::vector<double> probs = {0.1, 0.35, 0.05, 0.3, 0.2};
  SamplingParams params;
  params.temperature = 1.0;
  params.top_k = 2;
  params.seed = 2;
  Sampler sampler(params);
  const auto freq = frequencies(sampler, logits_of(probs), 20000);
  EXPECT_EQ(freq[0] + freq[2] + freq[4], 0.0);
  EXPECT_NEAR(freq[1], 0.35 / 0.65, 0.015);
  EXPECT_NEAR(freq[3], 0.3 / 0.65, 0.015);
}

TEST(SamplerTest, TopPKeepsTheSmallestPrefixReachingP) {
  const std::vector<double> probs = {0.15, 0.5, 0.05, 0.3};
  SamplingParams params;
  params.temperature = 1.0;
  params.top_p = 0.7;  // 0.5 < 0.7 <= 0.5 + 0.3: keeps tokens 1 and 3
  params.seed = 3;
  Sampler sampler(params);
  const auto freq = frequencies(sampler, logits_of(probs), 20000);
  EXPECT_EQ(freq[0] + freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.5 / 0.8, 0.015);
  EXPECT_NEAR(freq[3], 0.3 / 0.8, 0.015);

  params.top_p = 0.01;  // always at least the most likely token
  Sampler narrow(params);
  EXPECT_EQ(frequencies(narrow, logits_of(probs), 200)[1], 1.0);
}

TEST(SamplerTest, SameSeedGivesTheSameTokens) {
  const auto logits = random_logits(300, 5);
  SamplingParams params;
  params.temperature = 1.2;
  params.top_p = 0.9;
  params.top_k = 50;
  params.seed = 1234;
  Sampler a(params), b(params);
  params.seed = 1235;
  Sampler c(params);
  int differences = 0;
  for (int i = 0; i < 50; ++i) {
    const int32_t t = a.sample(logits.data(), 300, {}).token;
    EXPECT_EQ(t, b.sample(logits.data(), 300, {}).token);
    differences += t != c.sample(logits.data(), 300, {}).token;
  }
  EXPECT_GT(differences, 0);
}

TEST(SamplerTest, StopTokensAreFlagged) {
  const std::vector<float> logits = {0.0f, 1.0f, 5.0f};
  SamplingParams params;
  params.stop_token_ids = {2};
  Sampler sampler(params);
  const SampleResult r = sampler.sample(logits.data(), 3, {});
  EXPECT_EQ(r.token, 2);
  EXPECT_TRUE(r.stop);
  EXPECT_FALSE(sampler.is_stop(1));
}

TEST(SamplingDistributionTest, GreedyIsOneHotOnTheArgmax) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  std::vector<float> probs;
  sampling_distribution(logits.data(), 4, SamplingParams{}, {}, &probs);
  EXPECT_EQ(probs, (std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f}));
}

TEST(SamplingDistributionTest, AppliesTemperatureTopKAndTopPAsTheSamplerDoes) {
  const std::vector<double> probs = {0.1, 0.35, 0.05, 0.3, 0.2};
  SamplingParams params;
  params.temperature = 0.5;  // squares: 0.01 0.1225 0.0025 0.09 0.04
  params.top_k = 3;          // keeps 1, 3, 4
  params.top_p = 0.8;        // of 0.2525: 1 (0.485) then 3 (0.842) reaches 0.8
  std::vector<float> dist;
  sampling_distribution(logits_of(probs).data(), 5, params, {}, &dist);
  const double z = 0.1225 + 0.09;
  EXPECT_EQ(dist[0] + dist[2] + dist[4], 0.0f);
  EXPECT_NEAR(dist[1], 0.1225 / z, 1e-6);
  EXPECT_NEAR(dist[3], 0.09 / z, 1e-6);

  // The Sampler draws from exactly this distribution.
  params.seed = 8;
  Sampler sampler(params);
  const auto freq = frequencies(sampler, logits_of(probs), 20000);
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(freq[i], dist[i], 0.015);
}

TEST(SamplingDistributionTest, TopPOnALargeVocabularyKeepsTheFullSortsPrefix) {
  // The sampler sorts only as far as the top-p prefix reaches; the reference sorts the
  // whole vocabulary (descending logit, ties by id) and keeps the smallest prefix whose
  // mass reaches p. Quantised logits make ties common; a flat and a peaked row both.
  std::mt19937 gen(11);
  for (const double spread : {0.5, 8.0}) {
    for (const double top_p : {0.05, 0.5, 0.9, 0.999}) {
      const int32_t vocab = 20000;
      std::vector<float> logits(vocab);
      std::normal_distribution<float> normal(0.0f, static_cast<float>(spread));
      for (float& l : logits) l = std::round(normal(gen) * 8.0f) / 8.0f;
      SamplingParams params;
      params.temperature = 0.9;
      params.top_p = top_p;
      std::vector<float> probs;
      sampling_distribution(logits.data(), vocab, params, TokenHistory{}, &probs);

      std::vector<int32_t> order(vocab);
      for (int32_t i = 0; i < vocab; ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      const float max = logits[order[0]];
      std::vector<double> weight(vocab);
      double total = 0.0;
      for (int32_t i = 0; i < vocab; ++i) {
        weight[i] = std::exp((static_cast<double>(logits[i]) - max) / params.temperature);
        total += weight[i];
      }
      double mass = 0.0;
      std::set<int32_t> kept;
      for (int32_t id : order) {
        if (!kept.empty() && mass >= top_p * total) break;
        kept.insert(id);
        mass += weight[id];
      }
      for (int32_t i = 0; i < vocab; ++i) {
        if (kept.count(i) == 0) {
          ASSERT_EQ(probs[i], 0.0f) << "token " << i << " top_p " << top_p;
        } else {
          ASSERT_NEAR(probs[i], weight[i] / mass, 1e-6) << "token " << i << " top_p " << top_p;
        }
      }
    }
  }
}

TEST(SamplingDistributionTest, SampleFromFollowsTheProbabilitiesAndNeverDrawsAZero) {
  const std::vector<float> probs = {0.0f, 0.25f, 0.0f, 0.75f, 0.0f};
  Rng rng(4);
  std::vector<int> counts(probs.size(), 0);
  for (int i = 0; i < 20000; ++i) ++counts[sample_from(probs, rng)];
  EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
  EXPECT_NEAR(counts[1] / 20000.0, 0.25, 0.015);
  EXPECT_NEAR(counts[3] / 20000.0, 0.75, 0.015);
  // Unnormalised weights are fine; no weight at all draws nothing.
  const std::vector<float> scaled = {0.0f, 3.0f};
  EXPECT_EQ(sample_from(scaled, rng), 1);
  const std::vector<float> zeros = {0.0f, 0.0f};
  EXPECT_EQ(sample_from(zeros, rng), -1);
}

TEST(SamplerTest, ResultForReportsTheChosenTokensLogprobsAndStop) {
  const auto logits = random_logits(200, 21);
  SamplingParams params;
  params.temperature = 1.0;
  params.top_logprobs = 3;
  params.stop_token_ids = {7};
  Sampler sampler(params);
  const SampleResult drawn = sampler.sample(logits.data(), 200, {});
  const SampleResult chosen = sampler.result_for(logits.data(), 200, drawn.token);
  EXPECT_EQ(chosen.token, drawn.token);
  EXPECT_EQ(chosen.logprob, drawn.logprob);
  ASSERT_EQ(chosen.top.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(chosen.top[i].token, drawn.top[i].token);
  EXPECT_TRUE(sampler.result_for(logits.data(), 200, 7).stop);
  EXPECT_NEAR(sampler.result_for(logits.data(), 200, 7).logprob,
              token_logprob(logits.data(), 200, 7), 1e-6);
}

std::vector<int32_t> concat(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<int32_t> out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST(SamplerTest, ValidateNamesTheBadProcessingParameter) {
  const auto message = [](auto set) {
    SamplingParams p;
    set(p);
    return validate(p).message();
  };
  EXPECT_NE(message([](SamplingParams& p) { p.presence_penalty = 2.5; }).find("presence_penalty"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.frequency_penalty = -3; }).find("frequency_penalty"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.repetition_penalty = 0; }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.min_p = 1.5; }).find("min_p"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.min_tokens = -1; }).find("min_tokens"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) {
              p.logit_bias = {{3, 101.0f}};
            }).find("logit_bias"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) {
              p.logit_bias = {{-1, 1.0f}};
            }).find("logit_bias"),
            std::string::npos);
  SamplingParams edges;
  edges.presence_penalty = -2;
  edges.frequency_penalty = 2;
  edges.repetition_penalty = 0.5;
  edges.min_p = 1;
  edges.logit_bias = {{0, -100.0f}, {1, 100.0f}};
  EXPECT_TRUE(validate(edges).ok());
}

// Each parameter alone, then all together, against the reference: the greedy token is
// the reference argmax and the distribution is the reference softmax.
TEST(SamplerTest, ProcessingParametersMatchTheReferenceComputation) {
  const int32_t v = 64;
  const std::vector<int32_t> prompt = {3, 5, 5, 9, 40};
  const std::vector<int32_t> generated = {9, 12, 12, 12, 40, 7};
  const std::vector<int32_t> history = concat(prompt, generated);
  const TokenHistory h{history, static_cast<int64_t>(generated.size())};
  std::vector<std::function<void(SamplingParams&)>> cases = {
      [](SamplingParams& p) { p.presence_penalty = 1.5; },
      [](SamplingParams& p) { p.presence_penalty = -0.7; },
      [](SamplingParams& p) { p.frequency_penalty = 0.9; },
      [](SamplingParams& p) { p.repetition_penalty = 1.8; },
      [](SamplingParams& p) { p.repetition_penalty = 0.6; },
      [](SamplingParams& p) {
        p.logit_bias = {{2, 8.0f}, {12, -3.0f}};
      },
      [](SamplingParams& p) {
        p.min_tokens = 7;
        p.stop_token_ids = {7, 20};
      },
      [](SamplingParams& p) {
        p.presence_penalty = 0.4;
        p.frequency_penalty = 0.3;
        p.repetition_penalty = 1.3;
        p.logit_bias = {{9, 2.0f}};
        p.min_tokens = 10;
        p.stop_token_ids = {12};
      },
  };
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto logits = random_logits(v, 100 + seed);
    for (size_t i = 0; i < cases.size(); ++i) {
      SamplingParams params;
      cases[i](params);
      ASSERT_TRUE(validate(params).ok()) << i;
      const std::vector<float> ref = reference_processed(logits, params, prompt, generated);
      Sampler greedy(params);
      const SampleResult r = greedy.sample(logits.data(), v, h);
      EXPECT_EQ(r.token, argmax(ref.data(), v)) << "case " << i << " seed " << seed;
      // Log-probabilities stay the model's raw ones.
      EXPECT_EQ(r.logprob, token_logprob(logits.data(), v, r.token));

      params.temperature = 0.7;
      std::vector<float> dist;
      sampling_distribution(logits.data(), v, params, h, &dist);
      const float max = *std::max_element(ref.begin(), ref.end());
      double z = 0.0;
      for (float l : ref) z += std::exp((l - max) / 0.7);
      for (int32_t t = 0; t < v; ++t) {
        EXPECT_NEAR(dist[t], std::exp((ref[t] - max) / 0.7) / z, 1e-6) << i << " token " << t;
      }
    }
  }
}

TEST(SamplerTest, MinTokensMasksStopTokensOnlyUntilReached) {
  std::vector<float> logits(8, 0.0f);
  logits[2] = 5.0f;  // the stop token is the argmax
  SamplingParams params;
  params.stop_token_ids = {2};
  params.min_tokens = 3;
  Sampler sampler(params);
  const std::vector<int32_t> history = {1, 4, 4, 4};  // one prompt token, then generated
  EXPECT_NE(sampler.sample(logits.data(), 8, {history, 2}).token, 2);
  const SampleResult r = sampler.sample(logits.data(), 8, {history, 3});
  EXPECT_EQ(r.token, 2);
  EXPECT_TRUE(r.stop);
}

TEST(SamplerTest, MinPKeepsTokensAtLeastMinPTimesTheTopProbabilityAfterTemperature) {
  const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
  SamplingParams params;
  params.temperature = 1.0;
  params.min_p = 0.45;  // keeps p >= 0.18: tokens 0, 1, 2
  std::vector<float> dist;
  sampling_distribution(logits_of(probs).data(), 4, params, {}, &dist);
  EXPECT_NEAR(dist[0], 0.4 / 0.9, 1e-6);
  EXPECT_NEAR(dist[1], 0.3 / 0.9, 1e-6);
  EXPECT_NEAR(dist[2], 0.2 / 0.9, 1e-6);
  EXPECT_EQ(dist[3], 0.0f);
  // After temperature 0.5 the probabilities are 16:9:4:1, so 0.45 keeps only 0 and 1.
  params.temperature = 0.5;
  sampling_distribution(logits_of(probs).data(), 4, params, {}, &dist);
  EXPECT_NEAR(dist[0], 16.0 / 25.0, 1e-6);
  EXPECT_NEAR(dist[1], 9.0 / 25.0, 1e-6);
  EXPECT_EQ(dist[2] + dist[3], 0.0f);
  // min_p, then top_k, as vLLM orders them; the Sampler draws from the same.
  params.top_k = 1;
  sampling_distribution(logits_of(probs).data(), 4, params, {}, &dist);
  EXPECT_EQ(dist, (std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f}));
  params.top_k = 0;
  params.seed = 5;
  Sampler sampler(params);
  const auto freq = frequencies(sampler, logits_of(probs), 20000);
  EXPECT_NEAR(freq[0], 16.0 / 25.0, 0.015);
  EXPECT_EQ(freq[2] + freq[3], 0.0);
}

}  // namespace
}  // namespace moeserve::engine
