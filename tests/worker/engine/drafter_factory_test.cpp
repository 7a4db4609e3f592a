#include "worker/engine/drafter_factory.h"

#include <gtest/gtest.h>

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

TEST(DrafterFactoryTest, NoneIsNoDrafterNgramIsPromptLookupMtpIsRefusedForNow) {
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
  auto mtp = make_drafter(SpeculativeMethod::kMtp, *engine);
  ASSERT_FALSE(mtp.ok());
  EXPECT_EQ(mtp.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(mtp.status().message().find("MTP drafter is not built yet"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::engine
