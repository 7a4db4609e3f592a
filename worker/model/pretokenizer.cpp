#include "worker/model/pretokenizer.h"

#include <algorithm>
#include <string>

#include "worker/model/unicode.h"

namespace moeserve::model {
namespace {

// A code point that is no character: the value used for bytes that are not UTF-8.
constexpr char32_t kInvalidByte = 0x110000;

// Supported Split regexes, in canonical form (CR and LF written as \r and \n).
constexpr std::string_view kNumbersUpTo3Regex = R"(\p{N}{1,3})";
constexpr std::string_view kCjkRunRegex = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
constexpr std::string_view kDeepSeekWordsRegex =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|)"
    R"( ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Code points of one piece; matchers look at [p, n) only, so lookahead stops at the
// end of the piece as it does when Hugging Face runs a regex on a split.
struct Span {
  const char32_t* s;
  size_t n;
};

bool is_class(char32_t c, CharClass cls) { return char_class(c) == cls; }
bool is_letter(char32_t c) { return is_class(c, CharClass::kLetter); }
bool is_number(char32_t c) { return is_class(c, CharClass::kNumber); }
bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }
bool is_ascii_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}
bool is_letter_or_mark(char32_t c) {
  const CharClass cls = char_class(c);
  return cls == CharClass::kLetter || cls == CharClass::kMark;
}
bool is_punct_or_symbol(char32_t c) {
  const CharClass cls = char_class(c);
  return cls == CharClass::kPunctuation || cls == CharClass::kSymbol;
}
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) ||
         (c >= 0x30A0 && c <= 0x30FF);
}
bool is_not_space_letter_number(char32_t c) {
  return !is_whitespace(c) && !is_letter(c) && !is_number(c);
}

// End of the run of characters satisfying `pred` that starts at `p`.
template <typename Pred>
size_t run_end(Span t, size_t p, Pred pred) {
  while (p < t.n && pred(t.s[p])) ++p;
  return p;
}

// Length of `\s*[\r\n]+|\s+(?!\S)|\s+` at p (the first alternative only when
// `newline_alt`), 0 when no whitespace starts there.
size_t match_space_tail(Span t, size_t p, bool newline_alt) {
  if (!is_whitespace(t.s[p])) return 0;
  const size_t end = run_end(t, p, is_whitespace);
  if (newline_alt) {
    // \s* backtracks to the last CR/LF of the run.
    for (size_t q = end; q > p; --q) {
      if (is_newline(t.s[q - 1])) return q - p;
    }
  }
  // \s+(?!\S): the whole run at the end of the piece, else all but its last space
  // (which is followed by a non-space); a single space falls to \s+.
  if (end == t.n || end - p == 1) return end - p;
  return end - p - 1;
}

// Length of an English contraction ('s 't 're 've 'm 'll 'd) at p, or 0.
size_t match_contraction(Span t, size_t p, bool ignore_case) {
  if (t.s[p] != '\'' || p + 1 >= t.n) return 0;
  const auto lower = [&](size_t i) -> char32_t {
    if (i >= t.n) return 0;
    const char32_t c = t.s[i];
    if (!ignore_case) return c;
    if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
    if (c == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to 's'
    return c;
  };
  const char32_t a = lower(p + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const char32_t b = lower(p + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// DeepSeek-V3's third Split:
// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
// | ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
size_t match_deepseek_words(Span t, size_t p) {
  const char32_t c = t.s[p];
  if (is_ascii_punct(c) && p + 1 < t.n && is_ascii_alpha(t.s[p + 1])) {
    return run_end(t, p + 1, is_ascii_alpha) - p;
  }
  const CharClass cls = char_class(c);
  const bool optional_prefix = !is_newline(c) && cls != CharClass::kLetter &&
                               cls != CharClass::kPunctuation && cls != CharClass::kSymbol;
  if (optional_prefix && p + 1 < t.n && is_letter_or_mark(t.s[p + 1])) {
    return run_end(t, p + 1, is_letter_or_mark) - p;
  }
  if (is_letter_or_mark(c)) return run_end(t, p, is_letter_or_mark) - p;
  const size_t q = c == ' ' ? p + 1 : p;
  if (q < t.n && is_punct_or_symbol(t.s[q])) {
    return run_end(t, run_end(t, q, is_punct_or_symbol), is_newline) - p;
  }
  return match_space_tail(t, p, /*newline_alt=*/true);
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(Span t, size_t p) {
  if (const size_t len = match_contraction(t, p, /*ignore_case=*/false)) return len;
  const size_t q = t.s[p] == ' ' ? p + 1 : p;
  if (q < t.n) {
    const char32_t c = t.s[q];
    if (is_letter(c)) return run_end(t, q, is_letter) - p;
    if (is_number(c)) return run_end(t, q, is_number) - p;
    if (is_not_space_letter_number(c)) return run_end(t, q, is_not_space_letter_number) - p;
  }
  return match_space_tail(t, p, /*newline_alt=*/false);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
// | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_llama3(Span t, size_t p, size_t max_digits) {
  if (const size_t len = match_contraction(t, p, /*ignore_case=*/true)) return len;
  const char32_t c = t.s[p];
  const CharClass cls = char_class(c);
  if (!is_newline(c) && cls != CharClass::kLetter && cls != CharClass::kNumber && p + 1 < t.n &&
      is_letter(t.s[p + 1])) {
    return run_end(t, p + 1, is_letter) - p;
  }
  if (cls == CharClass::kLetter) return run_end(t, p, is_letter) - p;
  if (cls == CharClass::kNumber) return std::min(run_end(t, p, is_number) - p, max_digits);
  const size_t q = c == ' ' ? p + 1 : p;
  if (q < t.n && is_not_space_letter_number(t.s[q])) {
    return run_end(t, run_end(t, q, is_not_space_letter_number), is_newline) - p;
  }
  return match_space_tail(t, p, /*newline_alt=*/true);
}

// Length of the match of `rule` starting exactly at p (0: no match there).
size_t match_at(SplitRule rule, Span t, size_t p) {
  switch (rule) {
    case SplitRule::kNumbersUpTo3: return std::min<size_t>(run_end(t, p, is_number) - p, 3);
    case SplitRule::kCjkRun: return run_end(t, p, is_cjk) - p;
    case SplitRule::kDeepSeekWords: return match_deepseek_words(t, p);
    case SplitRule::kGpt2: return match_gpt2(t, p);
    case SplitRule::kLlama3: return match_llama3(t, p, 3);
    case SplitRule::kQwen2: return match_llama3(t, p, 1);
    case SplitRule::kDigitsIndividual: return is_number(t.s[p]) ? 1 : 0;
    case SplitRule::kDigitsContiguous: return run_end(t, p, is_number) - p;
  }
  return 0;
}

// Splits every piece (code point ranges) by `rule` with Isolated behavior.
std::vector<Piece> apply_rule(SplitRule rule, const std::vector<char32_t>& cps,
                              const std::vector<Piece>& pieces) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (const Piece& piece : pieces) {
    const Span t{cps.data() + piece.begin, piece.end - piece.begin};
    size_t gap_begin = 0;
    size_t p = 0;
    while (p < t.n) {
      const size_t len = match_at(rule, t, p);
      if (len == 0) {
        ++p;
        continue;
      }
      if (gap_begin < p)
        out.push_back({piece.begin + uint32_t(gap_begin), piece.begin + uint32_t(p)});
      out.push_back({piece.begin + uint32_t(p), piece.begin + uint32_t(p + len)});
      p += len;
      gap_begin = p;
    }
    if (gap_begin < t.n) out.push_back({piece.begin + uint32_t(gap_begin), piece.end});
  }
  return out;
}

// Regex text with literal CR and LF written as the escapes \r and \n, so that the
// two spellings found in tokenizer.json files compare equal.
std::string canonical_regex(std::string_view regex) {
  std::string out;
  out.reserve(regex.size());
  for (char c : regex) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Status parse_step(const nlohmann::json& step, const std::string& field,
                  std::vector<SplitRule>& rules, bool& add_prefix_space);

Status parse_split(const nlohmann::json& step, const std::string& field,
                   std::vector<SplitRule>& rules) {
  const auto pattern = step.find("pattern");
  if (pattern == step.end() || !pattern->is_object()) {
    return invalid_argument_error(field + ".pattern: missing or not an object");
  }
  const auto regex = pattern->find("Regex");
  if (regex == pattern->end() || !regex->is_string()) {
    return invalid_argument_error(field + ".pattern: only {\"Regex\": ...} patterns are supported");
  }
  const std::string behavior = step.value("behavior", std::string());
  if (behavior != "Isolated") {
    return invalid_argument_error(field + ".behavior: '" + behavior +
                                  "' is not supported (only Isolated)");
  }
  if (step.value("invert", false)) {
    return invalid_argument_error(field + ".invert: true is not supported");
  }
  auto rule = recognize_split_regex(regex->get<std::string>());
  if (!rule.ok()) return rule.status().with_context(field + ".pattern.Regex");
  rules.push_back(*rule);
  return ok_status();
}

Status parse_byte_level(const nlohmann::json& step, const std::string& field,
                        std::vector<SplitRule>& rules, bool& add_prefix_space) {
  if (step.value("add_prefix_space", false)) {
    if (!rules.empty()) {
      return invalid_argument_error(
          field + ".add_prefix_space: only supported when ByteLevel is the first step");
    }
    add_prefix_space = true;
  }
  if (step.value("use_regex", true)) rules.push_back(SplitRule::kGpt2);
  return ok_status();
}

Status parse_step(const nlohmann::json& step, const std::string& field,
                  std::vector<SplitRule>& rules, bool& add_prefix_space) {
  if (!step.is_object()) return invalid_argument_error(field + ": expected an object");
  const auto type_it = step.find("type");
  if (type_it == step.end() || !type_it->is_string()) {
    return invalid_argument_error(field + ".type: missing");
  }
  const std::string type = type_it->get<std::string>();
  if (type == "Sequence") {
    const auto list = step.find("pretokenizers");
    if (list == step.end() || !list->is_array()) {
      return invalid_argument_error(field + ".pretokenizers: missing or not an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MOESERVE_RETURN_IF_ERROR(parse_step((*list)[i],
                                          field + ".pretokenizers[" + std::to_string(i) + "]",
                                          rules, add_prefix_space));
    }
    return ok_status();
  }
  if (type == "Split") return parse_split(step, field, rules);
  if (type == "ByteLevel") return parse_byte_level(step, field, rules, add_prefix_space);
  if (type == "Digits") {
    rules.push_back(step.value("individual_digits", false) ? SplitRule::kDigitsIndividual
                                                           : SplitRule::kDigitsContiguous);
    return ok_status();
  }
  return invalid_argument_error(field + ".type: unsupported pre-tokenizer '" + type +
                                "' (supported: Sequence, Split, ByteLevel, Digits)");
}

}  // namespace

StatusOr<SplitRule> recognize_split_regex(std::string_view regex) {
  const std::string canonical = canonical_regex(regex);
  if (canonical == kNumbersUpTo3Regex) return SplitRule::kNumbersUpTo3;
  if (canonical == kCjkRunRegex) return SplitRule::kCjkRun;
  if (canonical == kDeepSeekWordsRegex) return SplitRule::kDeepSeekWords;
  if (canonical == kGpt2Regex) return SplitRule::kGpt2;
  if (canonical == kLlama3Regex) return SplitRule::kLlama3;
  if (canonical == kQwen2Regex) return SplitRule::kQwen2;
  return invalid_argument_error("unsupported regex '" + std::string(regex) +
                                "' (supported: the DeepSeek-V3 digit, CJK and word patterns, "
                                "GPT-2, Llama-3 and Qwen2 patterns)");
}

StatusOr<PreTokenizer> PreTokenizer::from_json(const nlohmann::json& pre_tokenizer) {
  if (pre_tokenizer.is_null()) return PreTokenizer();
  std::vector<SplitRule> rules;
  bool add_prefix_space = false;
  MOESERVE_RETURN_IF_ERROR(parse_step(pre_tokenizer, "pre_tokenizer", rules, add_prefix_space));
  return PreTokenizer(std::move(rules), add_prefix_space);
}

std::vector<Piece> PreTokenizer::split(std::string_view text) const {
  if (text.empty()) return {};
  // Decode once; offsets[i] is the byte offset of code point i (offsets.back() = size).
  std::vector<char32_t> cps;
  std::vector<uint32_t> offsets;
  cps.reserve(text.size());
  offsets.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = decode_utf8(text, pos);
    const uint32_t length = c.status == Utf8Status::kValid ? c.length : 1;
    cps.push_back(c.status == Utf8Status::kValid ? c.cp : kInvalidByte);
    offsets.push_back(uint32_t(pos));
    pos += length;
  }
  offsets.push_back(uint32_t(text.size()));

  std::vector<Piece> pieces{{0, uint32_t(cps.size())}};
  for (SplitRule rule : rules_) pieces = apply_rule(rule, cps, pieces);
  for (Piece& piece : pieces) piece = {offsets[piece.begin], offsets[piece.end]};
  return pieces;
}

}  // namespace moeserve::model
