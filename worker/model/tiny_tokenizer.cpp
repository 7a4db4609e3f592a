#include "worker/model/tiny_tokenizer.h"

#include <cctype>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

namespace moeserve::model {
namespace {

using nlohmann::ordered_json;

// Training text for the merges: plain English about the things this project does, so
// frequent words ("the", "model", "tokens") become single tokens.
constexpr std::string_view kTrainingText =
    "The model reads the text as tokens. Each token is a small piece of a word, and the most "
    "common words are a single token. The model predicts the next token from the tokens that "
    "came before it, one token at a time, and the server sends each new token back to the user "
    "as soon as it is ready.\n"
    "A mixture of experts model has many experts in each layer, but only a few of them run for "
    "each token. A small router looks at the token and picks the experts that fit it best. The "
    "experts that are not picked do no work for that token, so the model can be very large while "
    "the work for each token stays small. The shared experts run for every token.\n"
    "The experts are spread over many machines. When a token needs an expert that lives on "
    "another machine, the token is sent there, the expert does its work, and the result comes "
    "back. The load on each machine should be the same, so the hot experts get extra copies on "
    "the machines that have room for them.\n"
    "The weights of the model are stored in eight bits. Each block of weights has its own scale, "
    "and the kernels read the small weights and the scales and compute in full precision. This "
    "keeps the memory that each token has to read small, and reading memory is what sets the "
    "speed of the model when it writes one token at a time.\n"
    "The model can also guess the next two tokens at once. The extra head makes a draft, and the "
    "main model checks the draft in the same pass. When the draft is right, the user gets two "
    "tokens for the price of one. When it is wrong, the model keeps the first token and throws "
    "the second one away.\n"
    "The operator watches the cluster and makes sure that the right number of groups are "
    "running. When many users send requests, it adds groups; when the requests stop, it takes "
    "groups away, so the cost of each token stays low. The cost per token is measured and shown "
    "next to the speed, because the goal is to serve more tokens for less money.\n"
    "A user sends a message, and the server turns the message into tokens with the chat "
    "template. The template marks where the user speaks and where the assistant speaks. The "
    "assistant answers, token by token, until it writes the end of the sentence or reaches the "
    "limit that the user set.\n"
    "Tests check that the model gives the same answer as a simple reference, that the cache "
    "gives the same result as a full pass, and that bad files are refused with a clear message "
    "that names the file and the tensor. The tests are fast, and they run on every change.\n"
    "What is the time? It is ten past three. Where is the cat? The cat is on the mat, and the "
    "dog is in the garden. She said that they would come back in the morning, and they did. We "
    "think that this is a good way to learn, so we will try it again with more data.\n";

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr const char* kPad = "<｜▁pad▁｜>";
constexpr const char* kTrailingTokens[] = {
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
};
constexpr int64_t kLeadingSpecials = 3;
constexpr int64_t kByteTokens = 256;
constexpr int64_t kTrailing = std::size(kTrailingTokens);

// DeepSeek-V3's pre_tokenizer regexes, exactly as its tokenizer.json spells them.
constexpr const char* kDigitsRegex = "\\p{N}{1,3}";
constexpr const char* kCjkRegex = "[一-龥぀-ゟ゠-ヿ]+";
constexpr const char* kWordsRegex =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
    "\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// GPT-2's byte-to-character table: printable Latin-1 bytes map to themselves, the
// other bytes to U+0100 onwards in byte order.
std::vector<std::string> byte_level_alphabet() {
  std::vector<std::string> out(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    append_utf8(out[b], printable ? b : next++);
  }
  return out;
}

bool is_letter(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_punct(char c) { return std::ispunct(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_newline(char c) { return c == '\n' || c == '\r'; }

size_t letters_end(std::string_view t, size_t i) {
  while (i < t.size() && is_letter(t[i])) ++i;
  return i;
}

// Length of the piece at `i` under DeepSeek-V3's pre-tokenizer, for ASCII text (which
// is all the training text holds): digit runs of up to 3, then the word pattern's
// alternatives in order.
size_t piece_length(std::string_view t, size_t i) {
  const char c = t[i];
  const bool next_is_letter = i + 1 < t.size() && is_letter(t[i + 1]);
  if (is_digit(c)) {
    size_t j = i;
    while (j < t.size() && j - i < 3 && is_digit(t[j])) ++j;
    return j - i;
  }
  if (is_punct(c) && next_is_letter) return letters_end(t, i + 1) - i;
  if (is_letter(c)) return letters_end(t, i) - i;
  if (!is_newline(c) && !is_punct(c) && next_is_letter) return letters_end(t, i + 1) - i;
  if (is_punct(c) || (c == ' ' && i + 1 < t.size() && is_punct(t[i + 1]))) {
    size_t j = c == ' ' ? i + 1 : i;
    while (j < t.size() && is_punct(t[j])) ++j;
    while (j < t.size() && is_newline(t[j])) ++j;
    return j - i;
  }
  if (is_space(c)) {
    size_t j = i;
    size_t last_newline = std::string_view::npos;
    while (j < t.size() && is_space(t[j])) {
      if (is_newline(t[j])) last_newline = j;
      ++j;
    }
    if (last_newline != std::string_view::npos) return last_newline + 1 - i;
    if (j < t.size() && j - i > 1) return j - i - 1;
    return j - i;
  }
  return 1;
}

std::map<std::string, int64_t> count_pieces(std::string_view text) {
  std::map<std::string, int64_t> counts;
  for (size_t i = 0; i < text.size();) {
    const size_t n = piece_length(text, i);
    ++counts[std::string(text.substr(i, n))];
    i += n;
  }
  return counts;
}

struct Training {
  std::vector<std::string> tokens;  // byte-level spelling by id (ids from kLeadingSpecials)
  std::vector<std::string> merges;  // "a b"
};

// Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: smallest "a b"
// text) until `max_merges` or no pair occurs twice.
Training train_bpe(std::string_view text, int64_t max_merges) {
  const std::vector<std::string> alphabet = byte_level_alphabet();
  Training t;
  t.tokens = alphabet;
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [piece, count] : count_pieces(text)) {
    std::vector<int32_t> symbols;
    for (unsigned char b : piece) symbols.push_back(b);
    words.emplace_back(std::move(symbols), count);
  }
  while (static_cast<int64_t>(t.merges.size()) < max_merges) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += count;
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 1;
    std::string best_text;
    for (const auto& [pair, count] : pairs) {
      const std::string text_of_pair = t.tokens[pair.first] + " " + t.tokens[pair.second];
      if (count > best_count ||
          (count == best_count && best.first >= 0 && text_of_pair < best_text)) {
        best = pair;
        best_count = count;
        best_text = text_of_pair;
      }
    }
    if (best.first < 0) break;
    const int32_t merged = static_cast<int32_t>(t.tokens.size());
    t.tokens.push_back(t.tokens[best.first] + t.tokens[best.second]);
    t.merges.push_back(best_text);
    for (auto& [symbols, count] : words) {
      std::vector<int32_t> out;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best.first && symbols[i + 1] == best.second) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(symbols[i]);
        }
      }
      symbols = std::move(out);
    }
  }
  return t;
}

ordered_json added_token(int64_t id, const std::string& content, bool special) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

ordered_json split_step(const char* regex) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}

ordered_json token_config_entry(const char* content) {
  return {{"__type", "AddedToken"}, {"content", content}, {"lstrip", false},
          {"normalized", false},    {"rstrip", false},    {"single_word", false}};
}

}  // namespace

const char* const kTinyChatTemplate =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% set ns = namespace(system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- endfor %}{% if add_generation_prompt %}{{'<｜Assistant｜>'}}{% endif %}";

StatusOr<TinyTokenizer> make_tiny_tokenizer(int64_t vocab_size) {
  const int64_t fixed = kLeadingSpecials + kByteTokens + kTrailing;
  if (vocab_size < fixed) {
    return invalid_argument_error("tokenizer vocab_size " + std::to_string(vocab_size) +
                                  " is below the " + std::to_string(fixed) +
                                  " fixed tokens (3 specials, 256 bytes, 13 chat/tool markers)");
  }
  const Training training = train_bpe(kTrainingText, vocab_size - fixed);

  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < training.tokens.size(); ++i) {
    vocab[training.tokens[i]] = static_cast<int64_t>(i) + kLeadingSpecials;
  }
  ordered_json added = ordered_json::array();
  added.push_back(added_token(0, kBos, true));
  added.push_back(added_token(1, kEos, true));
  added.push_back(added_token(2, kPad, true));
  int64_t id = kLeadingSpecials + static_cast<int64_t>(training.tokens.size());
  for (int64_t n = 0; id < vocab_size - kTrailing; ++n, ++id) {
    added.push_back(added_token(id, "<｜place▁holder▁no▁" + std::to_string(n) + "｜>", true));
  }
  for (const char* content : kTrailingTokens) added.push_back(added_token(id++, content, false));

  TinyTokenizer out;
  out.vocab_size = vocab_size;
  out.merges = static_cast<int64_t>(training.merges.size());
  out.tokenizer_json = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", ordered_json::array()}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {split_step(kDigitsRegex),
          split_step(kCjkRegex),
          split_step(kWordsRegex),
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", false},
        {"use_regex", true}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", training.merges}}},
  };
  out.tokenizer_config_json = {
      {"add_bos_token", true},
      {"add_eos_token", false},
      {"bos_token", token_config_entry(kBos)},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", token_config_entry(kEos)},
      {"legacy", true},
      {"model_max_length", 16384},
      {"pad_token", token_config_entry(kEos)},
      {"sp_model_kwargs", ordered_json::object()},
      {"unk_token", nullptr},
      {"tokenizer_class", "LlamaTokenizerFast"},
      {"chat_template", kTinyChatTemplate},
  };
  return out;
}

}  // namespace moeserve::model
