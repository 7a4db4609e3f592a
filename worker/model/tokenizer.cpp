#include "worker/model/tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/file.h"
#include "worker/model/pretokenizer.h"
#include "worker/model/unicode.h"

namespace moeserve::model {
namespace {

using nlohmann::json;

// Largest token id accepted; guards the id-indexed tables against absurd files.
constexpr int64_t kMaxTokenId = 1 << 24;
// Bounds of the per-piece BPE cache (Hugging Face uses 10k entries).
constexpr size_t kMaxCacheEntries = 1 << 16;
constexpr size_t kMaxCachedPieceBytes = 256;

// GPT-2's byte <-> printable code point map used by the ByteLevel pre-tokenizer:
// printable Latin-1 bytes map to themselves, the others to U+0100 upwards in order.
struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_cp{};
  std::unordered_map<char32_t, uint8_t> cp_to_byte;

  ByteLevelTable() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_cp[b] = printable ? char32_t(b) : next++;
      cp_to_byte[byte_to_cp[b]] = uint8_t(b);
    }
  }
};

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

// Raw bytes of a vocabulary entry spelled in byte-level form. A spelling with a code
// point outside the map (e.g. a special token) stands for its own UTF-8 bytes, as in
// Hugging Face's ByteLevel decoder.
std::string byte_level_to_bytes(std::string_view spelling) {
  const ByteLevelTable& table = byte_level_table();
  std::string out;
  out.reserve(spelling.size());
  for (size_t pos = 0; pos < spelling.size();) {
    const Utf8Char c = decode_utf8(spelling, pos);
    const auto it = table.cp_to_byte.find(c.cp);
    if (c.status != Utf8Status::kValid || it == table.cp_to_byte.end()) {
      return std::string(spelling);
    }
    out.push_back(char(it->second));
    pos += c.length;
  }
  return out;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

struct Merge {
  uint32_t rank = 0;
  int32_t id = 0;
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

bool is_word_char(char32_t cp) {
  const CharClass cls = char_class(cp);
  return cls == CharClass::kLetter || cls == CharClass::kNumber || cp == '_';
}

// The code point that ends just before byte `pos` (pos > 0), and its length.
Utf8Char decode_utf8_before(std::string_view s, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
  Utf8Char c = decode_utf8(s, start);
  if (c.status != Utf8Status::kValid || start + c.length != pos) {
    return {kReplacementChar, 1, Utf8Status::kInvalid};
  }
  return c;
}

}  // namespace

struct Tokenizer::Data {
  // tokenizer.json spelling -> id (model vocabulary, then added tokens over it).
  std::unordered_map<std::string, int32_t> spelling_to_id;
  std::vector<std::string> id_to_spelling;
  std::vector<std::string> id_to_bytes;
  std::vector<uint8_t> id_known;
  std::vector<uint8_t> id_special;

  // BPE model over raw bytes.
  std::unordered_map<std::string, int32_t> bytes_to_id;
  std::array<int32_t, 256> byte_ids{};
  std::unordered_map<uint64_t, Merge> merges;
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool ignore_merges = false;

  std::vector<AddedToken> added;
  // Indices into `added` by first byte of the content, longest content first.
  std::array<std::vector<uint32_t>, 256> added_by_first_byte;

  PreTokenizer pre_tokenizer;
  // Every byte has a token (nothing is dropped), and the longest token's byte length:
  // then a text of n bytes has at least n / longest_token_bytes tokens.
  bool byte_complete = false;
  size_t longest_token_bytes = 0;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void set_token(int32_t id, const std::string& spelling, std::string bytes) {
    if (size_t(id) >= id_known.size()) {
      id_to_spelling.resize(id + 1);
      id_to_bytes.resize(id + 1);
      id_known.resize(id + 1, 0);
      id_special.resize(id + 1, 0);
    }
    id_to_spelling[id] = spelling;
    id_to_bytes[id] = std::move(bytes);
    id_known[id] = 1;
    spelling_to_id[spelling] = id;
  }

  bool known(int32_t id) const { return id >= 0 && size_t(id) < id_known.size() && id_known[id]; }

  // The added token matching at `pos`, if any (longest first).
  const AddedToken* added_at(std::string_view text, size_t pos, bool allow_special) const {
    for (uint32_t index : added_by_first_byte[uint8_t(text[pos])]) {
      const AddedToken& token = added[index];
      if (token.special && !allow_special) continue;
      if (text.compare(pos, token.content.size(), token.content) != 0) continue;
      if (token.single_word && !single_word_ok(text, pos, pos + token.content.size())) continue;
      return &token;
    }
    return nullptr;
  }

  static bool single_word_ok(std::string_view text, size_t begin, size_t end) {
    if (begin > 0 && is_word_char(decode_utf8_before(text, begin).cp)) return false;
    if (end < text.size() && is_word_char(decode_utf8(text, end).cp)) return false;
    return true;
  }

  std::vector<int32_t> bpe(std::string_view piece) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  // Appends the tokens of `segment`; stops early once `out` holds more than `limit`.
  void encode_plain(std::string_view segment, std::vector<int32_t>& out, size_t limit) const;
};

// Merges the bytes of one piece by merge rank: always the lowest-ranked adjacent
// pair, leftmost first on ties. A heap of candidate pairs keeps this O(n log n);
// stale candidates (a side already merged away) are skipped when popped.
std::vector<int32_t> Tokenizer::Data::bpe(std::string_view piece) const {
  if (ignore_merges) {
    const auto it = bytes_to_id.find(std::string(piece));
    if (it != bytes_to_id.end()) return {it->second};
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (char ch : piece) {
    int32_t id = byte_ids[uint8_t(ch)];
    if (id < 0) {
      if (!unk_id) continue;  // Hugging Face drops characters it cannot represent
      if (fuse_unk && !symbols.empty() && symbols.back().id == *unk_id) continue;
      id = *unk_id;
    }
    const int32_t index = int32_t(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto push_pair = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto it = merges.find(pair_key(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges.end()) heap.push({it->second.rank, left, it->second.id});
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) push_pair(i);

  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }

  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void Tokenizer::Data::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  std::string key;
  if (cacheable) {
    key.assign(piece);
    std::lock_guard<std::mutex> lock(cache_mu);
    const auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = bpe(piece);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() < kMaxCacheEntries) cache.emplace(std::move(key), std::move(ids));
  }
}

void Tokenizer::Data::encode_plain(std::string_view segment, std::vector<int32_t>& out,
                                   size_t limit) const {
  if (segment.empty()) return;
  std::string prefixed;
  if (pre_tokenizer.add_prefix_space() && segment.front() != ' ') {
    prefixed = " ";
    prefixed.append(segment);
    segment = prefixed;
  }
  for (const Piece& piece : pre_tokenizer.split(segment)) {
    if (out.size() > limit) return;
    encode_piece(segment.substr(piece.begin, piece.end - piece.begin), out);
  }
}

namespace {

Status check_normalizer(const json& root) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return ok_status();
  const std::string type = it->value("type", std::string());
  if (type == "Sequence" && it->value("normalizers", json::array()).empty()) return ok_status();
  return invalid_argument_error("normalizer.type: unsupported normalizer '" + type +
                                "' (only none or an empty Sequence)");
}

Status check_decoder(const json& root) {
  const auto it = root.find("decoder");
  if (it == root.end() || it->is_null()) {
    return invalid_argument_error("decoder: missing (only ByteLevel is supported)");
  }
  const std::string type = it->value("type", std::string());
  if (type != "ByteLevel") {
    return invalid_argument_error("decoder.type: unsupported decoder '" + type +
                                  "' (only ByteLevel)");
  }
  return ok_status();
}

Status check_model_options(const json& model) {
  if (model.value("byte_fallback", false)) {
    return invalid_argument_error("model.byte_fallback: true is not supported (byte-level BPE)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return invalid_argument_error(std::string("model.") + key + ": not supported");
    }
  }
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return invalid_argument_error("model.dropout: BPE dropout is not supported");
  }
  return ok_status();
}

Status parse_vocab(const json& model, Tokenizer::Data& data) {
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return invalid_argument_error("model.vocab: missing or not an object");
  }
  data.spelling_to_id.reserve(vocab->size() + 1024);
  data.bytes_to_id.reserve(vocab->size());
  for (const auto& [spelling, id_json] : vocab->items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > kMaxTokenId) {
      return invalid_argument_error("model.vocab['" + spelling +
                                    "']: id must be an integer in [0, " +
                                    std::to_string(kMaxTokenId) + "]");
    }
    const int32_t id = id_json.get<int32_t>();
    if (data.known(id)) {
      // Two spellings for one id: decode could only ever give one of them back.
      return invalid_argument_error("model.vocab['" + spelling + "']: id " + std::to_string(id) +
                                    " is also the id of '" + data.id_to_spelling[id] + "'");
    }
    std::string bytes = byte_level_to_bytes(spelling);
    if (bytes.size() == 1) data.byte_ids[uint8_t(bytes[0])] = id;
    data.bytes_to_id[bytes] = id;
    data.set_token(id, spelling, std::move(bytes));
  }
  return ok_status();
}

StatusOr<std::pair<std::string, std::string>> merge_parts(const json& entry,
                                                          const std::string& field) {
  if (entry.is_string()) {
    const std::string line = entry.get<std::string>();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return invalid_argument_error(field + ": expected \"left right\", got '" + line + "'");
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return std::make_pair(entry[0].get<std::string>(), entry[1].get<std::string>());
  }
  return invalid_argument_error(field +
                                ": expected a \"left right\" string or a [left, right] array");
}

Status parse_merges(const json& model, Tokenizer::Data& data) {
  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return invalid_argument_error("model.merges: missing or not an array");
  }
  // Runs before the added tokens are parsed, so spelling_to_id is model.vocab alone.
  const auto lookup = [&](const std::string& spelling,
                          const std::string& field) -> StatusOr<int32_t> {
    const auto it = data.spelling_to_id.find(spelling);
    if (it == data.spelling_to_id.end()) {
      return invalid_argument_error(field + ": token '" + spelling + "' is not in model.vocab");
    }
    return it->second;
  };
  data.merges.reserve(merges->size());
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const std::string field = "model.merges[" + std::to_string(rank) + "]";
    MOESERVE_ASSIGN_OR_RETURN(const auto parts, merge_parts((*merges)[rank], field));
    MOESERVE_ASSIGN_OR_RETURN(const int32_t left, lookup(parts.first, field));
    MOESERVE_ASSIGN_OR_RETURN(const int32_t right, lookup(parts.second, field));
    MOESERVE_ASSIGN_OR_RETURN(const int32_t merged, lookup(parts.first + parts.second, field));
    // A repeated pair takes its last rank, as Hugging Face's map construction does.
    data.merges[pair_key(left, right)] = Merge{uint32_t(rank), merged};
  }
  return ok_status();
}

Status parse_model(const json& root, Tokenizer::Data& data) {
  const auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) {
    return invalid_argument_error("model: missing or not an object");
  }
  const json& model = *model_it;
  const auto type = model.find("type");
  if (type == model.end() || !type->is_string()) {
    return invalid_argument_error("model.type: missing (only BPE is supported)");
  }
  if (type->get<std::string>() != "BPE") {
    return invalid_argument_error("model.type: unsupported model '" + type->get<std::string>() +
                                  "' (only BPE)");
  }
  MOESERVE_RETURN_IF_ERROR(check_model_options(model));
  data.byte_ids.fill(-1);
  MOESERVE_RETURN_IF_ERROR(parse_vocab(model, data));
  MOESERVE_RETURN_IF_ERROR(parse_merges(model, data));
  data.ignore_merges = model.value("ignore_merges", false);
  data.fuse_unk = model.value("fuse_unk", false);
  const auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    const auto it =
        unk->is_string() ? model["vocab"].find(unk->get<std::string>()) : model["vocab"].end();
    if (it == model["vocab"].end()) {
      return invalid_argument_error("model.unk_token: not a token of model.vocab");
    }
    data.unk_id = it->get<int32_t>();
  }
  return ok_status();
}

Status parse_added_tokens(const json& root, Tokenizer::Data& data) {
  const auto list = root.find("added_tokens");
  if (list == root.end() || list->is_null()) return ok_status();
  if (!list->is_array()) return invalid_argument_error("added_tokens: not an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string()) {
      return invalid_argument_error(field +
                                    ": expected an object with integer id and string content");
    }
    const int64_t id = entry["id"].get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      return invalid_argument_error(field + ".id: out of range");
    }
    AddedToken token;
    token.id = int32_t(id);
    token.content = entry["content"].get<std::string>();
    if (token.content.empty()) return invalid_argument_error(field + ".content: empty");
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.single_word = entry.value("single_word", false);
    if (data.known(token.id) && data.id_to_spelling[token.id] != token.content) {
      // Hugging Face files repeat vocabulary tokens here with the same spelling; a
      // different one would make the id decode to text that does not encode to it.
      return invalid_argument_error(field + ".id: " + std::to_string(token.id) +
                                    " is already the token '" + data.id_to_spelling[token.id] +
                                    "'");
    }
    data.set_token(token.id, token.content, token.content);
    data.id_special[token.id] = token.special ? 1 : 0;
    data.added.push_back(std::move(token));
  }
  for (uint32_t i = 0; i < data.added.size(); ++i) {
    data.added_by_first_byte[uint8_t(data.added[i].content[0])].push_back(i);
  }
  for (auto& bucket : data.added_by_first_byte) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
      return data.added[a].content.size() > data.added[b].content.size();
    });
  }
  return ok_status();
}

Status parse_root(const json& root, Tokenizer::Data& data) {
  if (!root.is_object()) return invalid_argument_error("expected a JSON object");
  MOESERVE_RETURN_IF_ERROR(parse_model(root, data));
  MOESERVE_RETURN_IF_ERROR(parse_added_tokens(root, data));
  MOESERVE_RETURN_IF_ERROR(check_normalizer(root));
  MOESERVE_ASSIGN_OR_RETURN(data.pre_tokenizer,
                            PreTokenizer::from_json(root.value("pre_tokenizer", json())));
  return check_decoder(root);
}

bool is_whitespace_at(std::string_view text, size_t pos, uint32_t& length) {
  const Utf8Char c = decode_utf8(text, pos);
  length = c.length;
  return c.status == Utf8Status::kValid && is_whitespace(c.cp);
}

}  // namespace

StatusOr<Tokenizer> Tokenizer::parse(std::string_view text) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return invalid_argument_error("tokenizer.json: not valid JSON");
  auto data = std::make_shared<Data>();
  Status status;
  try {
    status = parse_root(root, *data);
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type (e.g. "lstrip": "yes").
    status = invalid_argument_error(std::string("unexpected value type: ") + e.what());
  }
  if (!status.ok()) return status.with_context("tokenizer.json");
  data->byte_complete = std::ranges::all_of(data->byte_ids, [](int32_t id) { return id >= 0; });
  for (const std::string& bytes : data->id_to_bytes) {
    data->longest_token_bytes = std::max(data->longest_token_bytes, bytes.size());
  }
  for (const AddedToken& token : data->added) {
    data->longest_token_bytes = std::max(data->longest_token_bytes, token.content.size());
  }
  return Tokenizer(std::move(data));
}

StatusOr<Tokenizer> Tokenizer::load(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  auto tokenizer = parse(text);
  if (!tokenizer.ok()) return tokenizer.status().with_context(path);
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens_parsing,
                                       size_t max_tokens) const {
  const Data& d = *data_;
  std::vector<int32_t> ids;
  ids.reserve(std::min(text.size() / 3, max_tokens) + 1);
  size_t segment_begin = 0;
  size_t pos = 0;
  while (pos < text.size() && ids.size() <= max_tokens) {
    const AddedToken* token = d.added_at(text, pos, add_special_tokens_parsing);
    if (token == nullptr) {
      ++pos;
      continue;
    }
    size_t segment_end = pos;
    while (token->lstrip && segment_end > segment_begin) {
      const Utf8Char c = decode_utf8_before(text, segment_end);
      if (c.status != Utf8Status::kValid || !is_whitespace(c.cp)) break;
      segment_end -= c.length;
    }
    d.encode_plain(text.substr(segment_begin, segment_end - segment_begin), ids, max_tokens);
    ids.push_back(token->id);
    pos += token->content.size();
    uint32_t length = 0;
    while (token->rstrip && pos < text.size() && is_whitespace_at(text, pos, length)) pos += length;
    segment_begin = pos;
  }
  if (ids.size() <= max_tokens) d.encode_plain(text.substr(segment_begin), ids, max_tokens);
  return ids;
}

size_t Tokenizer::min_tokens_of(size_t text_bytes) const {
  const Data& d = *data_;
  if (!d.byte_complete || d.longest_token_bytes == 0) return 0;
  return (text_bytes + d.longest_token_bytes - 1) / d.longest_token_bytes;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string kEmpty;
  return data_->known(id) ? data_->id_to_bytes[id] : kEmpty;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (!data_->known(id) || (skip_special && data_->id_special[id])) continue;
    bytes += data_->id_to_bytes[id];
  }
  return sanitize_utf8(bytes);
}

int32_t Tokenizer::vocab_size() const { return int32_t(data_->id_known.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const auto it = data_->spelling_to_id.find(std::string(token));
  if (it == data_->spelling_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  return data_->known(id) ? data_->id_to_spelling[id] : std::string();
}

bool Tokenizer::is_special(int32_t id) const { return data_->known(id) && data_->id_special[id]; }

std::vector<int32_t> Tokenizer::special_ids() const {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < vocab_size(); ++id) {
    if (is_special(id)) ids.push_back(id);
  }
  return ids;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Char c = decode_utf8(pending_, pos);
    if (c.status == Utf8Status::kTruncated) break;  // wait for the rest of the character
    if (c.status == Utf8Status::kValid) {
      out.append(pending_, pos, c.length);
    } else {
      append_utf8(out, kReplacementChar);
    }
    pos += c.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace moeserve::model
