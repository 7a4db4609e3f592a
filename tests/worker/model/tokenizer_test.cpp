#include "worker/model/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "tools/fixtures/tiny_tokenizer.h"
#include "worker/model/chat_template.h"
#include "worker/model/pretokenizer.h"
#include "worker/model/unicode.h"

namespace moeserve::model {
namespace {

using nlohmann::json;

// DeepSeek-V3's pre_tokenizer, as its tokenizer.json has it.
constexpr const char* kDeepSeekPreTokenizer = R"json({
  "type": "Sequence",
  "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
    {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
    {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
  ]
})json";

// GPT-2's byte -> code point map, written independently of the tokenizer's.
std::string byte_level(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) {
    int cp = b;
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (!printable) {
      int n = 0;
      for (int x = 0; x < b; ++x) {
        const bool p = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
        if (!p) ++n;
      }
      cp = 256 + n;
    }
    append_utf8(out, char32_t(cp));
  }
  return out;
}

// A small byte-level BPE: ids 0..255 are the bytes themselves, then these merges
// (rank = position), then added tokens at 300+.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"3", "4"},            // rank 0 (256): must never fire across the digit split
    {"h", "e"},            // 1 (257)
    {"l", "l"},            // 2 (258)
    {"he", "ll"},          // 3 (259)
    {"hell", "o"},         // 4 (260)
    {" ", "w"},            // 5 (261)
    {"o", "r"},            // 6 (262)
    {" w", "or"},          // 7 (263)
    {"l", "d"},            // 8 (264)
    {" wor", "ld"},        // 9 (265)
    {"a", "b"},            // 10 (266)
    {"b", "c"},            // 11 (267)
    {"a", "a"},            // 12 (268)
    {"1", "2"},            // 13 (269)
    {"12", "3"},           // 14 (270)
    {"\xE4", "\xBD"},      // 15 (271): the first two bytes of 你 (E4 BD A0)
    {"\xE4\xBD", "\xA0"},  // 16 (272): 你
};
constexpr int32_t kBos = 300;
constexpr int32_t kUser = 301;
constexpr int32_t kThink = 302;
constexpr int32_t kMask = 303;

json tiny_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, char(b)))] = b;
  json merges = json::array();
  for (size_t i = 0; i < kMerges.size(); ++i) {
    const std::string left = byte_level(kMerges[i].first);
    const std::string right = byte_level(kMerges[i].second);
    vocab[left + right] = 256 + int(i);
    // Both spellings of a merge occur in the wild; use both.
    if (i % 2 == 0) {
      merges.push_back(left + " " + right);
    } else {
      merges.push_back(json::array({left, right}));
    }
  }
  json added = json::array();
  const auto add = [&](int id, const std::string& content, bool special, bool lstrip) {
    added.push_back({{"id", id},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", lstrip},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  };
  add(kBos, "<｜begin▁of▁sentence｜>", true, false);
  add(kUser, "<｜User｜>", true, false);
  add(kThink, "<think>", false, false);
  add(kMask, "<mask>", true, true);
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", json::array()}}},
          {"pre_tokenizer", json::parse(kDeepSeekPreTokenizer)},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

Tokenizer tiny_tokenizer() {
  auto tokenizer = Tokenizer::parse(tiny_tokenizer_json().dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().to_string();
  return *tokenizer;
}

int32_t byte_id(char c) { return int32_t(uint8_t(c)); }

std::vector<std::string> deepseek_pieces(const std::string& text) {
  auto pre = PreTokenizer::from_json(json::parse(kDeepSeekPreTokenizer));
  EXPECT_TRUE(pre.ok()) << pre.status().to_string();
  std::vector<std::string> out;
  for (const Piece& p : pre->split(text)) out.push_back(text.substr(p.begin, p.end - p.begin));
  return out;
}

using Pieces = std::vector<std::string>;

TEST(UnicodeTest, ClassesCoverAllPlanes) {
  EXPECT_EQ(char_class('A'), CharClass::kLetter);
  EXPECT_EQ(char_class('7'), CharClass::kNumber);
  EXPECT_EQ(char_class('!'), CharClass::kPunctuation);
  EXPECT_EQ(char_class('+'), CharClass::kSymbol);
  EXPECT_EQ(char_class(' '), CharClass::kOther);
  EXPECT_EQ(char_class(0x0301), CharClass::kMark);         // combining acute accent
  EXPECT_EQ(char_class(0x4E2D), CharClass::kLetter);       // 中
  EXPECT_EQ(char_class(0xFF01), CharClass::kPunctuation);  // fullwidth !
  EXPECT_EQ(char_class(0x2167), CharClass::kNumber);       // Roman numeral eight (Nl)
  EXPECT_EQ(char_class(0x1F44B), CharClass::kSymbol);      // waving hand emoji
  EXPECT_EQ(char_class(0x20000), CharClass::kLetter);      // CJK extension B
  EXPECT_EQ(char_class(0x1D7CE), CharClass::kNumber);      // mathematical bold digit zero
  EXPECT_EQ(char_class(0xE000), CharClass::kOther);        // private use
  EXPECT_EQ(char_class(0x0378), CharClass::kOther);        // unassigned
  EXPECT_EQ(char_class(0x10FFFF), CharClass::kOther);
  EXPECT_TRUE(is_whitespace(0x3000));
  EXPECT_TRUE(is_whitespace(0x85));
  EXPECT_TRUE(is_whitespace('\v'));
  EXPECT_FALSE(is_whitespace(0x200B));  // zero width space is not White_Space
}

TEST(UnicodeTest, DecoderRejectsOverlongSurrogatesAndOutOfRange) {
  EXPECT_EQ(decode_utf8("\xC0\x80", 0).status, Utf8Status::kInvalid);
  EXPECT_EQ(decode_utf8("\xED\xA0\x80", 0).status, Utf8Status::kInvalid);
  EXPECT_EQ(decode_utf8("\xF4\x90\x80\x80", 0).status, Utf8Status::kInvalid);
  const Utf8Char truncated = decode_utf8("\xE4\xBD", 0);
  EXPECT_EQ(truncated.status, Utf8Status::kTruncated);
  EXPECT_EQ(truncated.length, 2u);
  const Utf8Char emoji = decode_utf8("\xF0\x9F\x91\x8B", 0);
  EXPECT_EQ(emoji.status, Utf8Status::kValid);
  EXPECT_EQ(emoji.cp, char32_t(0x1F44B));
  // One U+FFFD per maximal invalid subpart, as String::from_utf8_lossy does.
  EXPECT_EQ(sanitize_utf8("a\xE2\x82z\xFF"), "a\uFFFDz\uFFFD");
}

TEST(PreTokenizerTest, DeepSeekSplitsWordsPunctuationAndSpaces) {
  EXPECT_EQ(deepseek_pieces("Hello, world!!!\n"), (Pieces{"Hello", ",", " world", "!!!\n"}));
  EXPECT_EQ(deepseek_pieces("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(deepseek_pieces("\n\n  hi  "), (Pieces{"\n\n", " ", " hi", "  "}));
  EXPECT_EQ(deepseek_pieces("x \t\n y"), (Pieces{"x", " \t\n", " y"}));
  // ASCII punctuation glues to the ASCII letters after it.
  EXPECT_EQ(deepseek_pieces("it's x.NET"), (Pieces{"it", "'s", " x", ".NET"}));
  // At a space the punctuation alternative wins over the ASCII one.
  EXPECT_EQ(deepseek_pieces("a .NET"), (Pieces{"a", " .", "NET"}));
}

TEST(PreTokenizerTest, DeepSeekSplitsNumbersInGroupsOfUpToThree) {
  EXPECT_EQ(deepseek_pieces("1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(deepseek_pieces("abc12345def"), (Pieces{"abc", "123", "45", "def"}));
  EXPECT_EQ(deepseek_pieces("x=3.14"), (Pieces{"x", "=", "3", ".", "14"}));
  // Any \p{N}: Arabic-Indic digits and Roman numerals count too.
  EXPECT_EQ(deepseek_pieces("\u0661\u0662\u0663\u0664"), (Pieces{"\u0661\u0662\u0663", "\u0664"}));
}

TEST(PreTokenizerTest, DeepSeekIsolatesCjkAndKeepsCombiningMarks) {
  EXPECT_EQ(deepseek_pieces("你好世界abc"), (Pieces{"你好世界", "abc"}));
  EXPECT_EQ(deepseek_pieces("東京タワーへ"), (Pieces{"東京タワーへ"}));
  // A decomposed accent (e + U+0301) stays inside its word.
  EXPECT_EQ(deepseek_pieces("cafe\u0301 ole\u0301"), (Pieces{"cafe\u0301", " ole\u0301"}));
  // Emoji are symbols: a space plus a run of symbols and punctuation.
  EXPECT_EQ(deepseek_pieces("hi \U0001F44B\U0001F3FD!"), (Pieces{"hi", " \U0001F44B\U0001F3FD!"}));
  // The pieces of DeepSeek's own tokenizer example (its 26 ids follow these splits).
  EXPECT_EQ(deepseek_pieces("Hello! 毕老师！1 + 1 = 2"),
            (Pieces{"Hello", "!", " ", "毕老师", "！", "1", " +", " ", "1", " =", " ", "2"}));
}

TEST(PreTokenizerTest, Gpt2AndLlama3Patterns) {
  const PreTokenizer gpt2({SplitRule::kGpt2});
  const PreTokenizer llama3({SplitRule::kLlama3});
  const auto pieces = [](const PreTokenizer& pre, const std::string& text) {
    Pieces out;
    for (const Piece& p : pre.split(text)) out.push_back(text.substr(p.begin, p.end - p.begin));
    return out;
  };
  EXPECT_EQ(pieces(gpt2, "I'll pay 12345 now!!  ok"),
            (Pieces{"I", "'ll", " pay", " 12345", " now", "!!", " ", " ok"}));
  EXPECT_EQ(pieces(llama3, "I'LL pay 12345 now!!\n\nok"),
            (Pieces{"I", "'LL", " pay", " ", "123", "45", " now", "!!\n\n", "ok"}));
}

TEST(PreTokenizerTest, RecognisesPatternsWithEitherNewlineSpelling) {
  // Llama-3's file writes \r\n as regex escapes, DeepSeek's as raw characters.
  EXPECT_EQ(*recognize_split_regex(
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
            SplitRule::kLlama3);
  const auto unknown = recognize_split_regex("\\w+");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unsupported regex"), std::string::npos);
}

TEST(TokenizerTest, MergesByRankToKnownIds) {
  const Tokenizer tok = tiny_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 304);
  // "hello" -> he l l o -> he ll o -> hell o -> hello; " world" -> " w" or ld -> ...
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{260, 265}));
  // Rank decides: "a b" (rank 10) beats "b c" (rank 11).
  EXPECT_EQ(tok.encode("abc"), (std::vector<int32_t>{266, byte_id('c')}));
  EXPECT_EQ(tok.encode("bc"), (std::vector<int32_t>{267}));
  // Equal ranks: the leftmost pair merges first.
  EXPECT_EQ(tok.encode("aaa"), (std::vector<int32_t>{268, byte_id('a')}));
  // No merge applies: single bytes.
  EXPECT_EQ(tok.encode("zq"), (std::vector<int32_t>{byte_id('z'), byte_id('q')}));
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(TokenizerTest, NumbersSplitBeforeMerging) {
  const Tokenizer tok = tiny_tokenizer();
  // Pieces "123" and "45": the rank-0 merge "3 4" must not join across them.
  EXPECT_EQ(tok.encode("12345"), (std::vector<int32_t>{270, byte_id('4'), byte_id('5')}));
  EXPECT_EQ(tok.encode("34"), (std::vector<int32_t>{256}));
}

TEST(TokenizerTest, MultiByteCharactersMergeFromBytes) {
  const Tokenizer tok = tiny_tokenizer();
  // 你 = E4 BD A0: (E4, BD) then (E4BD, A0).
  EXPECT_EQ(tok.encode("你"), (std::vector<int32_t>{272}));
  EXPECT_EQ(tok.id_to_token(272), byte_level("\xE4\xBD\xA0"));
  EXPECT_EQ(tok.token_bytes(272), "你");
  // 好 (E5 A5 BD) has no merges: three byte tokens.
  EXPECT_EQ(tok.encode("好"), (std::vector<int32_t>{0xE5, 0xA5, 0xBD}));
}

TEST(TokenizerTest, SpecialTokensMatchedFirst) {
  const Tokenizer tok = tiny_tokenizer();
  EXPECT_EQ(tok.encode("<｜begin▁of▁sentence｜><｜User｜>hello<think>"),
            (std::vector<int32_t>{kBos, kUser, 260, kThink}));
  // Without special-token parsing the special text is ordinary bytes, but the
  // non-special added token is still recognised.
  const std::vector<int32_t> plain = tok.encode("<｜User｜><think>", false);
  EXPECT_EQ(plain.back(), kThink);
  EXPECT_GT(plain.size(), 2u);
  EXPECT_EQ(tok.decode(plain), "<｜User｜><think>");
  // lstrip swallows the spaces before the token.
  EXPECT_EQ(tok.encode("hello   <mask>"), (std::vector<int32_t>{260, kMask}));
  EXPECT_TRUE(tok.is_special(kBos));
  EXPECT_FALSE(tok.is_special(kThink));
  EXPECT_EQ(tok.special_ids(), (std::vector<int32_t>{kBos, kUser, kMask}));
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), kUser);
  EXPECT_EQ(tok.token_to_id(byte_level(" world")), 265);
  EXPECT_FALSE(tok.token_to_id("nope").has_value());
}

TEST(TokenizerTest, DecodeRoundTripsAndSkipsSpecialAndUnknownIds) {
  const Tokenizer tok = tiny_tokenizer();
  for (const std::string text :
       {"hello world", "Hello, World! 12345 abcabc", "你好，世界！こんにちは", "emoji 👋🏽 ok",
        "cafe\u0301\n\n\t  tabs  ", "<｜User｜>hi<think>x", "a\r\nb"}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
  EXPECT_EQ(tok.decode({kBos, 260, kUser, 265}, /*skip_special=*/true), "hello world");
  EXPECT_EQ(tok.decode({260, -5, 99999, 304, 280, 265}), "hello world");
  // Bytes that are not UTF-8 on their own decode to U+FFFD, never to invalid text.
  EXPECT_EQ(tok.decode({0xE4, byte_id('x')}), "\uFFFDx");
}

TEST(TokenizerTest, InvalidUtf8InputIsTokenizedBytewise) {
  const Tokenizer tok = tiny_tokenizer();
  EXPECT_EQ(tok.encode("a\xFF"), (std::vector<int32_t>{byte_id('a'), 0xFF}));
}

TEST(IncrementalDecoderTest, HoldsBackPartialCharacters) {
  const Tokenizer tok = tiny_tokenizer();
  IncrementalDecoder dec(tok, /*skip_special=*/false);
  EXPECT_EQ(dec.push(0xE4), "");
  EXPECT_EQ(dec.push(0xBD), "");
  EXPECT_EQ(dec.push(0xA0), "你");
  EXPECT_EQ(dec.push(271), "");  // E4 BD: a character spanning two tokens
  EXPECT_EQ(dec.push(0xA0), "你");
  EXPECT_EQ(dec.push(260), "hello");
  EXPECT_EQ(dec.push(0xF0), "");
  EXPECT_EQ(dec.push(0x9F), "");
  EXPECT_EQ(dec.flush(), "\uFFFD");
  EXPECT_EQ(dec.push(byte_id('x')), "x");
  // An invalid byte is emitted at once as U+FFFD.
  EXPECT_EQ(dec.push(0xFF), "\uFFFD");
}

TEST(IncrementalDecoderTest, MatchesFullDecodeOnRandomIds) {
  const Tokenizer tok = tiny_tokenizer();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> id(-2, tok.vocab_size() + 2);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 40);
    for (auto& x : ids) x = id(rng);
    for (bool skip : {false, true}) {
      IncrementalDecoder dec(tok, skip);
      std::string streamed;
      for (int32_t x : ids) streamed += dec.push(x);
      streamed += dec.flush();
      ASSERT_EQ(streamed, tok.decode(ids, skip)) << "trial " << trial;
    }
  }
}

TEST(TokenizerTest, EncodeIsFastOnLongPrompts) {
  // A long prompt of repeated and varied words exercises the BPE heap and cache;
  // the test only asserts correctness (no timing), the size keeps regressions visible.
  const Tokenizer tok = tiny_tokenizer();
  std::string text;
  for (int i = 0; i < 5000; ++i) text += (i % 3 ? "hello world " : "abcaaa 12345 ");
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(TokenizerTest, EncodingStopsPastALimitAndTheByteBoundHolds) {
  const Tokenizer tok = tiny_tokenizer();
  std::string text;
  for (int i = 0; i < 2000; ++i) text += (i % 3 ? "hello world " : "abcaaa 12345 ");
  const std::vector<int32_t> all = tok.encode(text);
  ASSERT_GT(all.size(), 100u);
  const std::vector<int32_t> limited = tok.encode(text, true, 100);
  EXPECT_GT(limited.size(), 100u) << "past the limit, so the caller can tell";
  EXPECT_LT(limited.size(), all.size() / 2) << "but not the whole encoding";
  EXPECT_TRUE(std::equal(limited.begin(), limited.end(), all.begin()));
  EXPECT_EQ(tok.encode(text, true, all.size()), all);
  // Every byte has a token here, so bytes / longest token is a lower bound.
  EXPECT_GT(tok.min_tokens_of(text.size()), 0u);
  EXPECT_LE(tok.min_tokens_of(text.size()), all.size());
  EXPECT_EQ(tok.min_tokens_of(0), 0u);
}

TEST(TokenizerTest, LoadsTheTinyModelTokenizerAndChatTemplate) {
  auto tiny = fixtures::make_tiny_tokenizer(512);
  ASSERT_TRUE(tiny.ok()) << tiny.status().to_string();
  auto tok = Tokenizer::parse(tiny->tokenizer_json.dump());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(tok->vocab_size(), 512);
  auto chat = ChatTemplate::from_tokenizer_config(json::parse(tiny->tokenizer_config_json.dump()));
  ASSERT_TRUE(chat.ok()) << chat.status().to_string();
  const std::string prompt = *chat->render({{"user", "How do experts route 12345 tokens?"}}, true);
  const std::vector<int32_t> ids = tok->encode(prompt);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tiny->bos_token_id);
  EXPECT_EQ(ids.back(), *tok->token_to_id("<｜Assistant｜>"));
  EXPECT_EQ(tok->decode(ids), prompt);
  // Learned merges make common words shorter than their bytes.
  EXPECT_LT(tok->encode(" experts route tokens").size(),
            std::string(" experts route tokens").size());
}

Status parse_error(const json& j) { return Tokenizer::parse(j.dump()).status(); }

void expect_error(const Status& status, const std::string& needle) {
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(needle), std::string::npos) << status.to_string();
}

TEST(TokenizerErrorsTest, MalformedFilesNameTheField) {
  expect_error(Tokenizer::parse("{not json").status(), "not valid JSON");
  json j = tiny_tokenizer_json();
  j.erase("model");
  expect_error(parse_error(j), "model: missing");

  j = tiny_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  expect_error(parse_error(j), "model.type: unsupported model 'WordPiece'");

  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("q zz");
  expect_error(parse_error(j), "token 'zz' is not in model.vocab");

  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("a b c");
  expect_error(parse_error(j), "model.merges[17]");

  j = tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Whitespace";
  expect_error(parse_error(j), "pre_tokenizer.pretokenizers[1].type: unsupported pre-tokenizer");

  j = tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\d+";
  expect_error(parse_error(j), "pre_tokenizer.pretokenizers[0].pattern.Regex");

  j = tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expect_error(parse_error(j), "behavior: 'Removed' is not supported");

  j = tiny_tokenizer_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(parse_error(j), "decoder.type");

  j = tiny_tokenizer_json();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_error(parse_error(j), "normalizer.type");

  j = tiny_tokenizer_json();
  j["added_tokens"][0]["lstrip"] = "yes";
  expect_error(parse_error(j), "tokenizer.json");

  j = tiny_tokenizer_json();
  j["model"]["byte_fallback"] = true;
  expect_error(parse_error(j), "model.byte_fallback");

  // One id, two spellings: decoding the id could not give back what encoded to it.
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["Ġextra"] = 97;
  expect_error(parse_error(j), "id 97 is also the id of");

  j = tiny_tokenizer_json();
  j["added_tokens"][0]["id"] = 97;
  expect_error(parse_error(j), "added_tokens[0].id: 97 is already the token 'a'");

  // Repeating a vocabulary token with its own spelling is what Hugging Face files do.
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["<eos>"] = 310;
  j["added_tokens"].push_back({{"id", 310}, {"content", "<eos>"}, {"special", true}});
  EXPECT_TRUE(Tokenizer::parse(j.dump()).ok());
}

TEST(TokenizerErrorsTest, LoadNamesTheFile) {
  expect_error(Tokenizer::load("/nonexistent/tokenizer.json").status(),
               "/nonexistent/tokenizer.json");
  const std::string path = testing::TempDir() + "tokenizer_test_tokenizer.json";
  {
    std::ofstream out(path);
    out << tiny_tokenizer_json().dump();
  }
  auto tok = Tokenizer::load(path);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(tok->encode("hello"), (std::vector<int32_t>{260}));
}

}  // namespace
}  // namespace moeserve::model
