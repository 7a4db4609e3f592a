// tokenizer.json (worker/model/tokenizer.h): Tokenizer::parse on any bytes. With an
// accepted tokenizer, encoding sample texts (and the input's own first bytes) gives ids
// inside the vocabulary, the same ids twice (the piece cache changes nothing), text
// that decodes to valid UTF-8, and an IncrementalDecoder whose pieces concatenate to
// decode(). When every byte has a token and nothing strips or adds spaces (lstrip,
// rstrip, add_prefix_space), decode(encode(text)) == text for valid UTF-8 text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_check.h"
#include "worker/model/tokenizer.h"

namespace {

using moeserve::model::Tokenizer;

// Whether any object in `value` sets one of the space-changing options to true.
bool changes_spaces(const nlohmann::json& value) {
  if (value.is_object()) {
    for (const char* key : {"lstrip", "rstrip", "add_prefix_space"}) {
      auto it = value.find(key);
      if (it != value.end() && !(it->is_boolean() && !it->get<bool>())) return true;
    }
  }
  if (value.is_structured()) {
    for (const nlohmann::json& child : value) {
      if (changes_spaces(child)) return true;
    }
  }
  return false;
}

void check_text(const Tokenizer& tokenizer, std::string_view text, bool round_trips) {
  for (bool special : {true, false}) {
    const std::vector<int32_t> ids = tokenizer.encode(text, special);
    FUZZ_CHECK(tokenizer.encode(text, special) == ids, "encode is not deterministic");
    for (int32_t id : ids) {
      FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size(), "id outside the vocabulary");
    }
    for (bool skip : {false, true}) {
      const std::string decoded = tokenizer.decode(ids, skip);
      FUZZ_CHECK(moeserve::fuzz::valid_utf8(decoded), "decode gave invalid UTF-8");
      moeserve::model::IncrementalDecoder incremental(tokenizer, skip);
      std::string pieces;
      for (int32_t id : ids) pieces += incremental.push(id);
      pieces += incremental.flush();
      FUZZ_CHECK(pieces == decoded, "incremental decoding differs from decode()");
      if (round_trips && !skip && moeserve::fuzz::valid_utf8(text)) {
        FUZZ_CHECK(decoded == text, "decode(encode(text)) != text: " + decoded);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json_text(reinterpret_cast<const char*>(data), size);
  moeserve::StatusOr<Tokenizer> tokenizer = Tokenizer::parse(json_text);
  if (!tokenizer.ok()) {
    FUZZ_CHECK(!tokenizer.status().message().empty(), "an error without a message");
    return 0;
  }
  const bool round_trips =
      tokenizer->min_tokens_of(1) > 0 && !changes_spaces(nlohmann::json::parse(json_text));
  static constexpr std::string_view kSamples[] = {
      "Hello, world! 12345 the quick brown fox",
      "  leading spaces\n\nand\r\nnew lines\t\ttabs  ",
      "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82 caf\xc3\xa9 \xf0\x9f\x98\x80",
      "<\xef\xbd\x9c"
      "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>hi",
      "\xff\xfe invalid \xc3",
  };
  for (std::string_view sample : kSamples) check_text(*tokenizer, sample, round_trips);
  check_text(*tokenizer, json_text.substr(0, 256), round_trips);
  return 0;
}
