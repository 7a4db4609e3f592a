#include "worker/engine/drafter_factory.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/worker/engine/tiny_engine.h"

namespace moeserve::engine {
namespace {

TEST(DrafterFactoryTest, MethodNamesRoundTripAndOthersAreRefused) {
  for (SpeculativeMethod m :
       {SpeculativeMethod::kNone, SpeculativeMethod::kNgram, SpeculativeMethod::kMtp}) {
    auto parsed = parse_speculative_method(speculative_method_name(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  auto eagle = parse_speculative_method("eagle");
  ASSERT_FALSE(eagle.ok());
  EXPECT_EQ(eagle.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(eagle.status().message(),
            "speculative decoding must be mtp, ngram or none, not 'eagle'");
}

TEST(DrafterFactoryTest, NoneIsNoDrafterNgramIsPromptLookupMtpNeedsTheMtpLayers) {
  moeserve::testing::TempDir dir;
  auto engine = testing::make_engine(testing::make_tiny_model(
      dir.path(), model::Architecture::kDeepseekV3, model::WeightPrecision::kBf16, 3));
  ASSERT_NE(engine, nullptr);
  auto none = make_drafter(SpeculativeMethod::kNone, *engine);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  auto ngram = make_drafter(SpeculativeMethod::kNgram, *engine);
  ASSERT_TRUE(ngram.ok());
  EXPECT_EQ((*ngram)->name(), "ngram");
  // Loaded without its MTP layers: refused, with the reason.
  auto refused = make_drafter(SpeculativeMethod::kMtp, *engine);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("loaded without its MTP layers"), std::string::npos);

  moeserve::testing::TempDir mtp_dir;
  auto mtp_engine = testing::make_engine(
      testing::make_tiny_model(mtp_dir.path(), {.seed = 3}, /*load_mtp=*/true));
  ASSERT_NE(mtp_engine, nullptr);
  int hooked = 0;
  auto mtp = make_drafter(SpeculativeMethod::kMtp, *mtp_engine, [&hooked] {
    ++hooked;
    return ok_status();
  });
  ASSERT_TRUE(mtp.ok()) << mtp.status().to_string();
  EXPECT_EQ((*mtp)->name(), "mtp");
  EXPECT_TRUE((*mtp)->needs_hidden());
  // The hook runs before the drafter's forward.
  const std::vector<int32_t> tokens = {3, 4, 5};
  const std::vector<float> h(2 * mtp_engine->config().hidden_size, 0.5f);
  const DraftInput in{
      .sequence = 1, .tokens = tokens, .committed = 2, .hidden = h.data(), .max_draft = 1};
  std::vector<Draft> drafts;
  ASSERT_TRUE((*mtp)->step({&in, 1}, &drafts).ok());
  EXPECT_EQ(hooked, 1);
  EXPECT_EQ(drafts.at(0).tokens.size(), 1u);
  (*mtp)->release(1);
}

}  // namespace
}  // namespace moeserve::engine
