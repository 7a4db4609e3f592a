#include "worker/engine/ngram_drafter.h"

#include <gtest/gtest.h>

#include <vector>

namespace moeserve::engine {
namespace {

using Tokens = std::vector<int32_t>;

TEST(NgramLookupTest, ProposesWhatFollowedTheLongestMatchingSuffix) {
  // Suffix "1 2 3" occurred at the start, followed by 4 5; "3" alone also occurred
  // before 9, but the longer match wins.
  const Tokens tokens = {1, 2, 3, 4, 5, 3, 9, 1, 2, 3};
  EXPECT_EQ(ngram_lookup(tokens, 1, 3, 2), (Tokens{4, 5}));
  EXPECT_EQ(ngram_lookup(tokens, 1, 3, 5), (Tokens{4, 5, 3, 9, 1}));
  // With bigrams at most, "2 3" matches the same place.
  EXPECT_EQ(ngram_lookup(tokens, 1, 2, 1), (Tokens{4}));
}

TEST(NgramLookupTest, TheMostRecentEarlierOccurrenceWins) {
  const Tokens tokens = {7, 1, 7, 2, 7};
  EXPECT_EQ(ngram_lookup(tokens, 1, 3, 2), (Tokens{2, 7}));
}

TEST(NgramLookupTest, DraftsStopAtTheEndOfTheKnownTokens) {
  const Tokens tokens = {5, 6, 5};
  EXPECT_EQ(ngram_lookup(tokens, 1, 3, 4), (Tokens{6, 5}));
}

TEST(NgramLookupTest, NoMatchOrNoRoomProposesNothing) {
  EXPECT_TRUE(ngram_lookup(Tokens{1, 2, 3, 4}, 1, 3, 3).empty());
  EXPECT_TRUE(ngram_lookup(Tokens{1}, 1, 3, 3).empty());
  EXPECT_TRUE(ngram_lookup(Tokens{1, 1}, 1, 3, 0).empty());
}

TEST(NgramDrafterTest, OneDraftPerInputWithoutProbabilities) {
  NgramDrafter drafter;
  EXPECT_EQ(drafter.name(), "ngram");
  EXPECT_FALSE(drafter.needs_hidden());
  const Tokens a = {1, 2, 1, 2, 1}, b = {3, 4};
  std::vector<DraftInput> inputs(3);
  inputs[0].tokens = a;
  inputs[0].max_draft = 2;
  inputs[1].tokens = b;
  inputs[1].max_draft = 2;
  inputs[2].tokens = a;  // a prefill chunk: no drafts wanted
  std::vector<Draft> drafts;
  ASSERT_TRUE(drafter.step(inputs, &drafts).ok());
  ASSERT_EQ(drafts.size(), 3u);
  EXPECT_EQ(drafts[0].tokens, (Tokens{2, 1}));
  EXPECT_TRUE(drafts[0].probs.empty());
  EXPECT_TRUE(drafts[1].tokens.empty());
  EXPECT_TRUE(drafts[2].tokens.empty());
}

}  // namespace
}  // namespace moeserve::engine
