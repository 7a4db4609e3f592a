// Stop strings across token boundaries, and a choice's text, token count and logprobs
// built from generated tokens with the tiny model's tokenizer.
#include "worker/server/text_output.h"

#include <gtest/gtest.h>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve::server {
namespace {

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p);
  return out + m.flush();
}

TEST(StopMatcher, StopSpanningPiecesIsCutWithEverythingAfter) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("abc E"), "abc ");  // "E" could start END: held back
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("Dxyz"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, HeldTextIsReleasedWhenItCannotBecomeAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("xE"), "x");
  EXPECT_EQ(m.push("Nd"), "ENd");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("EN"), "");
  EXPECT_EQ(m.flush(), "EN");  // generation ended: nothing is lost
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"bcd", "cx", "\n\n"});
  EXPECT_EQ(feed(m, {"ab", "c", "x d"}), "ab");
  StopMatcher n({"bcd", "cx"});
  EXPECT_EQ(feed(n, {"abcd"}), "a");
  StopMatcher none({"zz"});
  EXPECT_EQ(feed(none, {"a", "z", "b", "z"}), "azbz");
  StopMatcher multibyte({"é!"});
  EXPECT_EQ(feed(multibyte, {"caf", "\xC3\xA9", "!", "tail"}), "caf");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}

class ChoiceTextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    ASSERT_TRUE(fixtures::write_tiny_model(dir_->path(), {}).ok());
    auto t = model::Tokenizer::load(dir_->file("tokenizer.json"));
    ASSERT_TRUE(t.ok());
    tokenizer_ = new model::Tokenizer(*t);
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete dir_;
  }
  static engine::SampleResult sample(int32_t token, float logprob = -1.0f) {
    engine::SampleResult s;
    s.token = token;
    s.logprob = logprob;
    s.top = {{token, logprob}, {token + 1, logprob - 1.0f}};
    return s;
  }
  static moeserve::testing::TempDir* dir_;
  static model::Tokenizer* tokenizer_;
};
moeserve::testing::TempDir* ChoiceTextTest::dir_ = nullptr;
model::Tokenizer* ChoiceTextTest::tokenizer_ = nullptr;

TEST_F(ChoiceTextTest, TextEqualsTheDecodedTokensAndOffsetsCountCharacters) {
  const std::vector<int32_t> ids = tokenizer_->encode("hello wide world");
  ChoiceText text(*tokenizer_, {}, /*logprobs=*/true);
  for (int32_t id : ids) text.push(sample(id));
  text.finish();
  EXPECT_EQ(text.text(), "hello wide world");
  EXPECT_EQ(text.tokens(), static_cast<int64_t>(ids.size()));
  ASSERT_EQ(text.logprobs().size(), ids.size());
  int64_t offset = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(text.logprobs()[i].text_offset, offset);
    EXPECT_EQ(text.logprobs()[i].token, tokenizer_->decode({ids[i]}));
    EXPECT_EQ(text.logprobs()[i].top.size(), 2u);
    offset += utf8_length(text.logprobs()[i].token);
  }
}

TEST_F(ChoiceTextTest, StopStringEndsTheChoiceAndLaterTokensDoNotCount) {
  const std::vector<int32_t> ids = tokenizer_->encode("one two three four");
  ChoiceText text(*tokenizer_, {"o th"}, /*logprobs=*/false);
  int64_t pushed = 0;
  for (int32_t id : ids) {
    text.push(sample(id));
    ++pushed;
    if (text.stopped_by_string()) break;
  }
  for (int32_t id : ids) text.push(sample(id));  // after the stop: ignored
  EXPECT_TRUE(text.stopped_by_string());
  EXPECT_EQ(text.text(), "one tw");
  EXPECT_EQ(text.tokens(), pushed);
  EXPECT_TRUE(text.logprobs().empty());
}

// vLLM's rule: before min_tokens tokens no stop string ends the choice; one that ends in
// or after the min_tokens-th token does (also when it began before).
TEST_F(ChoiceTextTest, StopStringsWaitForMinTokens) {
  const std::string prompt = "ab ab ab ab ab ab";
  const std::vector<int32_t> ids = tokenizer_->encode(prompt);
  auto run = [&](int64_t min_tokens) {
    ChoiceText text(*tokenizer_, {"ab"}, false, DecodeOptions{true, false, min_tokens});
    int64_t pushed = 0;
    for (int32_t id : ids) {
      text.push(sample(id));
      ++pushed;
      if (text.stopped_by_string()) break;
    }
    text.finish();
    return std::pair{text.text(), pushed};
  };
  const auto [immediate, immediate_tokens] = run(0);
  EXPECT_EQ(immediate, "");
  const int64_t half = static_cast<int64_t>(ids.size()) / 2;
  const auto [later, later_tokens] = run(half);
  EXPECT_GE(later_tokens, half);  // nothing stopped before min_tokens
  EXPECT_LT(later_tokens, static_cast<int64_t>(ids.size()) + 1);
  EXPECT_FALSE(later.empty());
  EXPECT_TRUE(prompt.starts_with(later)) << later;
  // Past the end of the text: no stop string may end it, all text comes out.
  const auto [all, all_tokens] = run(static_cast<int64_t>(ids.size()) + 1);
  EXPECT_EQ(all, prompt);
  EXPECT_EQ(all_tokens, static_cast<int64_t>(ids.size()));
}

TEST(StopMatcher, NotYetMayStopReleasesAllButAPossibleStart) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("a STOP b ST", /*may_stop=*/false), "a STOP b ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("OP c", /*may_stop=*/true), "");
  EXPECT_TRUE(m.stopped());
}

TEST_F(ChoiceTextTest, DeltasPartitionTheText) {
  const std::vector<int32_t> ids = tokenizer_->encode("abc def ghi");
  ChoiceText text(*tokenizer_, {"zzz"}, true);
  std::string joined;
  size_t entries = 0;
  for (int32_t id : ids) {
    text.push(sample(id));
    ChoiceOutput d = text.take_delta();
    joined += d.text;
    entries += d.logprobs.size();
  }
  text.finish();
  joined += text.take_delta().text;
  EXPECT_EQ(joined, "abc def ghi");
  EXPECT_EQ(entries, ids.size());
  EXPECT_TRUE(text.take_delta().text.empty());
}

TEST(StopMatcher, IncludeStopKeepsTheStopString) {
  StopMatcher m({"END", "EN"}, /*include_stop=*/true);
  EXPECT_EQ(feed(m, {"abc E", "ND tail"}), "abc END");
  EXPECT_TRUE(m.stopped());
}

TEST_F(ChoiceTextTest, LogprobBytesAreTheTokensOwnBytes) {
  // "é" is two bytes; a byte-level token of just its first byte decodes to U+FFFD.
  const std::optional<int32_t> first_byte = tokenizer_->token_to_id("Ã");
  ASSERT_TRUE(first_byte.has_value());
  ChoiceText text(*tokenizer_, {}, /*logprobs=*/true);
  text.push(sample(*first_byte));
  ASSERT_EQ(text.logprobs().size(), 1u);
  EXPECT_EQ(text.logprobs()[0].token, "\xEF\xBF\xBD");
  EXPECT_EQ(text.logprobs()[0].bytes, "\xC3");
  EXPECT_EQ(text.logprobs()[0].top[0].bytes, "\xC3");
}

TEST_F(ChoiceTextTest, StopTokensCountButAreNotText) {
  const std::vector<int32_t> ids = tokenizer_->encode("hi");
  const int32_t eos = *tokenizer_->token_to_id("<｜end▁of▁sentence｜>");
  const int32_t user = *tokenizer_->token_to_id("<｜User｜>");  // not special
  for (const bool include : {false, true}) {
    ChoiceText text(*tokenizer_, {}, false, {/*skip_special_tokens=*/false, include});
    for (int32_t id : ids) text.push(sample(id));
    engine::SampleResult stop = sample(user);
    stop.stop = true;  // a stop_token_ids token
    text.push(stop);
    text.finish();
    EXPECT_EQ(text.text(), include ? "hi<｜User｜>" : "hi");
    EXPECT_EQ(text.tokens(), static_cast<int64_t>(ids.size()) + 1);
  }
  // skip_special_tokens false keeps special tokens that did not stop the choice.
  ChoiceText raw(*tokenizer_, {}, false, {/*skip_special_tokens=*/false, false});
  raw.push(sample(eos));
  raw.push(sample(ids[0]));
  raw.finish();
  EXPECT_EQ(raw.text(), "<｜end▁of▁sentence｜>" + tokenizer_->decode({ids[0]}));
  ChoiceText skipped(*tokenizer_, {}, false);
  skipped.push(sample(eos));
  skipped.finish();
  EXPECT_EQ(skipped.text(), "");
}

}  // namespace
}  // namespace moeserve::server
