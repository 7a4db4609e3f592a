#include "worker/model/jinja/parser.h"

#include <cstring>
#include <optional>

namespace moeserve::jinja {
namespace {

struct Token {
  enum class Type {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Type type = Type::kEof;
  std::string text;  // text, name, operator, or the decoded string literal
  int64_t integer = 0;
  double number = 0.0;
  int line = 1;
};

Status error_at(int line, const std::string& message) {
  return invalid_argument_error("line " + std::to_string(line) + ": " + message);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Splits the source into text and tag tokens, applying whitespace control.
class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(source) {
    // Jinja2 drops one trailing newline of the source (keep_trailing_newline=False).
    if (src_.ends_with("\r\n")) {
      src_.remove_suffix(2);
    } else if (src_.ends_with('\n') || src_.ends_with('\r')) {
      src_.remove_suffix(1);
    }
  }

  StatusOr<std::vector<Token>> run() {
    bool line_starting = true;  // the previous tag's source ended with a newline
    bool strip_next = false;    // the previous tag ended with `-`
    while (pos_ < src_.size()) {
      const size_t open = find_open(pos_);
      std::string text(src_.substr(pos_, open - pos_));
      if (strip_next) {
        size_t first = 0;
        while (first < text.size() && is_space(text[first])) ++first;
        text.erase(0, first);
      }
      if (open == src_.size()) {
        emit_text(std::move(text));
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char modifier = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (modifier == '-') {
        size_t end = text.size();
        while (end > 0 && is_space(text[end - 1])) --end;
        text.resize(end);
      } else if (modifier != '+' && kind != '{') {
        // lstrip_blocks: spaces before a block or comment tag on its own line go.
        const size_t line_start = text.rfind('\n');
        const size_t from = line_start == std::string::npos ? 0 : line_start + 1;
        if (line_start != std::string::npos || line_starting) {
          bool blank = true;
          for (size_t i = from; i < text.size(); ++i) blank = blank && is_space(text[i]);
          if (blank) text.resize(from);
        }
      }
      emit_text(std::move(text));
      line_ = line_at(open);
      pos_ = open + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      char right = '\0';  // the closing tag's modifier
      if (kind == '#') {
        const size_t close = src_.find("#}", pos_);
        if (close == std::string_view::npos) return error_at(line_, "unclosed comment");
        if (close > pos_ && (src_[close - 1] == '-' || src_[close - 1] == '+')) {
          right = src_[close - 1];
        }
        pos_ = close + 2;
      } else {
        tokens_.push_back(
            {kind == '{' ? Token::Type::kVarBegin : Token::Type::kBlockBegin, "", 0, 0.0, line_});
        MOESERVE_RETURN_IF_ERROR(lex_tag(kind == '{' ? '}' : '%', &right));
      }
      strip_next = right == '-';
      // trim_blocks: the first newline after a block or comment tag goes.
      if (right == '\0' && kind != '{' && pos_ < src_.size() && src_[pos_] == '\n') ++pos_;
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back({Token::Type::kEof, "", 0, 0.0, line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  size_t find_open(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  int line_at(size_t offset) {
    while (line_pos_ < offset && line_pos_ < src_.size()) {
      if (src_[line_pos_++] == '\n') ++line_count_;
    }
    return line_count_;
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back({Token::Type::kText, std::move(text), 0, 0.0, line_});
  }

  // Tokens inside {{ }} or {% %}, up to and including the closing delimiter.
  Status lex_tag(char closer, char* right_modifier) {
    int depth = 0;  // open brackets: a `}}` inside a dict literal does not close the tag
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) return error_at(line_, "unclosed tag");
      const std::string_view rest = src_.substr(pos_);
      const std::string close = std::string(1, closer) + "}";
      if (depth == 0) {
        for (const char* mod : {"-", "+", ""}) {
          if (rest.starts_with(std::string(mod) + close)) {
            *right_modifier = *mod;
            pos_ += std::strlen(mod) + 2;
            tokens_.push_back(
                {closer == '}' ? Token::Type::kVarEnd : Token::Type::kBlockEnd, "", 0, 0.0, line_});
            return ok_status();
          }
        }
      }
      const char c = src_[pos_];
      if (is_name_start(c)) {
        size_t end = pos_;
        while (end < src_.size() && is_name_char(src_[end])) ++end;
        tokens_.push_back(
            {Token::Type::kName, std::string(src_.substr(pos_, end - pos_)), 0, 0.0, line_});
        pos_ = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        MOESERVE_RETURN_IF_ERROR(lex_number());
      } else if (c == '\'' || c == '"') {
        MOESERVE_RETURN_IF_ERROR(lex_string(c));
      } else {
        static const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                           "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                           "]",  "{",  "}",  ".",  ",",  ":",  "|"};
        const char* op = nullptr;
        for (const char* candidate : kOps) {
          if (rest.starts_with(candidate)) {
            op = candidate;
            break;
          }
        }
        if (op == nullptr) return error_at(line_, std::string("unexpected character '") + c + "'");
        if (*op == '(' || *op == '[' || *op == '{') ++depth;
        if ((*op == ')' || *op == ']' || *op == '}') && depth > 0) --depth;
        tokens_.push_back({Token::Type::kOp, op, 0, 0.0, line_});
        pos_ += std::strlen(op);
      }
    }
  }

  Status lex_number() {
    size_t end = pos_;
    std::string digits;
    bool is_float = false;
    const auto take_digits = [&] {
      while (end < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) {
        if (src_[end] != '_') digits.push_back(src_[end]);
        ++end;
      }
    };
    take_digits();
    if (end + 1 < src_.size() && src_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      is_float = true;
      digits.push_back('.');
      ++end;
      take_digits();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t e = end + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      if (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) {
        is_float = true;
        digits += src_.substr(end, e - end);
        end = e;
        take_digits();
      }
    }
    Token t{is_float ? Token::Type::kFloat : Token::Type::kInt, digits, 0, 0.0, line_};
    try {
      if (is_float) {
        t.number = std::stod(digits);
      } else {
        t.integer = std::stoll(digits);
      }
    } catch (const std::exception&) {
      return error_at(line_, "number out of range: " + digits);
    }
    tokens_.push_back(std::move(t));
    pos_ = end;
    return ok_status();
  }

  Status lex_string(char quote) {
    std::string out;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) return error_at(line_, "unterminated string literal");
      const char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\' || i + 1 >= src_.size()) {
        out.push_back(c);
        ++i;
        continue;
      }
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'v': out.push_back('\v'); break;
        case 'a': out.push_back('\a'); break;
        case '0': out.push_back('\0'); break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case '\n': break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + width > src_.size()) return error_at(line_, "truncated \\" + std::string(1, e));
          uint32_t cp = 0;
          for (size_t k = 0; k < width; ++k) {
            const char h = src_[i + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) {
              return error_at(line_, "bad \\" + std::string(1, e) + " escape");
            }
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : std::tolower(h) - 'a' + 10);
          }
          append_utf8(cp, &out);
          i += width;
          break;
        }
        default:  // Python keeps unknown escapes as written
          out.push_back('\\');
          out.push_back(e);
      }
    }
    tokens_.push_back({Token::Type::kString, std::move(out), 0, 0.0, line_});
    pos_ = i + 1;
    return ok_status();
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_pos_ = 0;
  int line_count_ = 1;
  std::vector<Token> tokens_;
};

ExprPtr make(Expr::Type type, int line, std::string name = "") {
  auto e = std::make_unique<Expr>();
  e->type = type;
  e->line = line;
  e->name = std::move(name);
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  StatusOr<Body> parse_template() {
    Body body;
    std::string end_tag;
    MOESERVE_RETURN_IF_ERROR(parse_body({}, &body, &end_tag));
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() { return tokens_[std::min(pos_++, tokens_.size() - 1)]; }
  bool at_op(const char* op) const { return peek().type == Token::Type::kOp && peek().text == op; }
  bool at_name(const char* name) const {
    return peek().type == Token::Type::kName && peek().text == name;
  }
  bool accept_op(const char* op) {
    if (!at_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!at_name(name)) return false;
    ++pos_;
    return true;
  }
  Status expect_op(const char* op) {
    if (accept_op(op)) return ok_status();
    return error_at(peek().line, std::string("expected '") + op + "', got " + describe(peek()));
  }
  Status expect_name(const char* name) {
    if (accept_name(name)) return ok_status();
    return error_at(peek().line, std::string("expected '") + name + "', got " + describe(peek()));
  }
  Status expect_block_end() {
    if (peek().type == Token::Type::kBlockEnd) {
      ++pos_;
      return ok_status();
    }
    return error_at(peek().line, "expected the end of the statement, got " + describe(peek()));
  }
  StatusOr<std::string> expect_identifier() {
    if (peek().type != Token::Type::kName) {
      return error_at(peek().line, "expected a name, got " + describe(peek()));
    }
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kEof: return "the end of the template";
      case Token::Type::kBlockEnd: return "'%}'";
      case Token::Type::kVarEnd: return "'}}'";
      case Token::Type::kText: return "text";
      case Token::Type::kString: return "a string";
      default: return "'" + t.text + "'";
    }
  }

  // Parses nodes until a block tag whose first name is in `ends` (consumed up to that
  // name; *end_tag says which) or the end of input (only when `ends` is empty).
  Status parse_body(const std::vector<std::string>& ends, Body* body, std::string* end_tag) {
    while (true) {
      const Token& t = peek();
      if (t.type == Token::Type::kEof) {
        if (ends.empty()) return ok_status();
        return error_at(t.line, "missing '" + ends.back() + "'");
      }
      if (t.type == Token::Type::kText) {
        auto node = std::make_unique<Node>();
        node->type = Node::Type::kText;
        node->line = t.line;
        node->text = next().text;
        body->push_back(std::move(node));
      } else if (t.type == Token::Type::kVarBegin) {
        next();
        auto node = std::make_unique<Node>();
        node->type = Node::Type::kOutput;
        node->line = t.line;
        MOESERVE_ASSIGN_OR_RETURN(node->expr, parse_tuple());
        if (peek().type != Token::Type::kVarEnd) {
          return error_at(peek().line, "expected '}}', got " + describe(peek()));
        }
        next();
        body->push_back(std::move(node));
      } else if (t.type == Token::Type::kBlockBegin) {
        const Token& keyword = peek(1);
        if (keyword.type != Token::Type::kName) {
          return error_at(keyword.line, "expected a statement name");
        }
        for (const std::string& end : ends) {
          if (keyword.text == end) {
            pos_ += 2;
            *end_tag = end;
            return ok_status();
          }
        }
        pos_ += 2;
        MOESERVE_ASSIGN_OR_RETURN(auto node, parse_statement(keyword.text, keyword.line));
        body->push_back(std::move(node));
      } else {
        return error_at(t.line, "unexpected " + describe(t));
      }
    }
  }

  StatusOr<std::unique_ptr<Node>> parse_statement(const std::string& keyword, int line) {
    auto node = std::make_unique<Node>();
    node->line = line;
    std::string end;
    if (keyword == "if") {
      node->type = Node::Type::kIf;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr cond, parse_expression());
      MOESERVE_RETURN_IF_ERROR(expect_block_end());
      while (true) {
        Body branch;
        MOESERVE_RETURN_IF_ERROR(parse_body({"elif", "else", "endif"}, &branch, &end));
        node->branches.emplace_back(std::move(cond), std::move(branch));
        if (end == "endif") break;
        if (end == "else") {
          MOESERVE_RETURN_IF_ERROR(expect_block_end());
          Body else_branch;
          MOESERVE_RETURN_IF_ERROR(parse_body({"endif"}, &else_branch, &end));
          node->branches.emplace_back(nullptr, std::move(else_branch));
          break;
        }
        MOESERVE_ASSIGN_OR_RETURN(cond, parse_expression());
        MOESERVE_RETURN_IF_ERROR(expect_block_end());
      }
    } else if (keyword == "for") {
      node->type = Node::Type::kFor;
      MOESERVE_RETURN_IF_ERROR(parse_targets(&node->targets));
      MOESERVE_RETURN_IF_ERROR(expect_name("in"));
      MOESERVE_ASSIGN_OR_RETURN(node->expr, parse_tuple(/*with_condexpr=*/false));
      if (accept_name("if")) {
        MOESERVE_ASSIGN_OR_RETURN(node->condition, parse_expression());
      }
      if (at_name("recursive")) return error_at(peek().line, "recursive loops are not supported");
      MOESERVE_RETURN_IF_ERROR(expect_block_end());
      MOESERVE_RETURN_IF_ERROR(parse_body({"else", "endfor"}, &node->body, &end));
      if (end == "else") {
        MOESERVE_RETURN_IF_ERROR(expect_block_end());
        MOESERVE_RETURN_IF_ERROR(parse_body({"endfor"}, &node->else_body, &end));
      }
    } else if (keyword == "set") {
      MOESERVE_RETURN_IF_ERROR(parse_targets(&node->targets));
      if (node->targets.size() == 1 && accept_op(".")) {
        MOESERVE_ASSIGN_OR_RETURN(node->attribute, expect_identifier());
      }
      if (accept_op("=")) {
        node->type = Node::Type::kSet;
        MOESERVE_ASSIGN_OR_RETURN(node->expr, parse_tuple());
      } else {
        node->type = Node::Type::kSetBlock;
        if (node->targets.size() != 1) return error_at(line, "a block set takes one name");
        MOESERVE_RETURN_IF_ERROR(expect_block_end());
        MOESERVE_RETURN_IF_ERROR(parse_body({"endset"}, &node->body, &end));
      }
    } else if (keyword == "macro") {
      node->type = Node::Type::kMacro;
      MOESERVE_ASSIGN_OR_RETURN(std::string name, expect_identifier());
      node->targets.push_back(std::move(name));
      MOESERVE_RETURN_IF_ERROR(expect_op("("));
      while (!accept_op(")")) {
        if (!node->params.empty()) MOESERVE_RETURN_IF_ERROR(expect_op(","));
        if (accept_op(")")) break;
        MOESERVE_ASSIGN_OR_RETURN(std::string param, expect_identifier());
        ExprPtr fallback;
        if (accept_op("=")) {
          MOESERVE_ASSIGN_OR_RETURN(fallback, parse_expression());
        }
        node->params.emplace_back(std::move(param), std::move(fallback));
      }
      MOESERVE_RETURN_IF_ERROR(expect_block_end());
      MOESERVE_RETURN_IF_ERROR(parse_body({"endmacro"}, &node->body, &end));
    } else if (keyword == "filter") {
      node->type = Node::Type::kFilterBlock;
      // The filter applies to the block's output: the input slot stays a placeholder.
      MOESERVE_ASSIGN_OR_RETURN(node->expr, parse_filter(make(Expr::Type::kLiteral, line)));
      MOESERVE_RETURN_IF_ERROR(expect_block_end());
      MOESERVE_RETURN_IF_ERROR(parse_body({"endfilter"}, &node->body, &end));
    } else if (keyword == "break" || keyword == "continue") {
      node->type = keyword == "break" ? Node::Type::kBreak : Node::Type::kContinue;
    } else {
      return error_at(line, "unknown statement '" + keyword + "'");
    }
    MOESERVE_RETURN_IF_ERROR(expect_block_end());
    return node;
  }

  // name or name, name, ... (optionally parenthesised)
  Status parse_targets(std::vector<std::string>* targets) {
    const bool paren = accept_op("(");
    do {
      MOESERVE_ASSIGN_OR_RETURN(std::string name, expect_identifier());
      targets->push_back(std::move(name));
    } while (accept_op(",") && peek().type == Token::Type::kName);
    if (paren) MOESERVE_RETURN_IF_ERROR(expect_op(")"));
    return ok_status();
  }

  // expr or expr, expr, ... (a tuple, which we represent as a list).
  StatusOr<ExprPtr> parse_tuple(bool with_condexpr = true) {
    const int line = peek().line;
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr first, with_condexpr ? parse_expression() : parse_or());
    if (!at_op(",")) return first;
    ExprPtr list = make(Expr::Type::kList, line);
    list->children.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().type == Token::Type::kVarEnd || peek().type == Token::Type::kBlockEnd) break;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr item, with_condexpr ? parse_expression() : parse_or());
      list->children.push_back(std::move(item));
    }
    return list;
  }

  StatusOr<ExprPtr> parse_expression() {
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr expr, parse_or());
    while (at_name("if")) {
      const int line = next().line;
      ExprPtr cond_expr = make(Expr::Type::kCondExpr, line);
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr cond, parse_or());
      ExprPtr otherwise;
      if (accept_name("else")) {
        MOESERVE_ASSIGN_OR_RETURN(otherwise, parse_expression());
      }
      cond_expr->children.push_back(std::move(expr));
      cond_expr->children.push_back(std::move(cond));
      cond_expr->children.push_back(std::move(otherwise));
      expr = std::move(cond_expr);
    }
    return expr;
  }

  static ExprPtr binary(std::string op, ExprPtr left, ExprPtr right, int line) {
    ExprPtr e = make(Expr::Type::kBinary, line, std::move(op));
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  StatusOr<ExprPtr> parse_or() {
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (at_name("or")) {
      const int line = next().line;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      left = binary("or", std::move(left), std::move(right), line);
    }
    return left;
  }

  StatusOr<ExprPtr> parse_and() {
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (at_name("and")) {
      const int line = next().line;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      left = binary("and", std::move(left), std::move(right), line);
    }
    return left;
  }

  StatusOr<ExprPtr> parse_not() {
    if (at_name("not")) {
      const int line = next().line;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
      ExprPtr e = make(Expr::Type::kUnary, line, "not");
      e->children.push_back(std::move(operand));
      return e;
    }
    return parse_compare();
  }

  // a < b < c is (a < b) and (b < c), as in Python; b is evaluated twice, which is
  // harmless for side-effect-free template expressions.
  StatusOr<ExprPtr> parse_compare() {
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr left, parse_math1());
    ExprPtr result;
    while (true) {
      std::string op;
      const int line = peek().line;
      if (peek().type == Token::Type::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (at_name("in")) {
        next();
        op = "in";
      } else if (at_name("not") && peek(1).type == Token::Type::kName && peek(1).text == "in") {
        pos_ += 2;
        op = "not in";
      } else {
        break;
      }
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr right, parse_math1());
      ExprPtr right_copy = clone(*right);
      ExprPtr comparison = binary(op, std::move(left), std::move(right), line);
      result = result == nullptr ? std::move(comparison)
                                 : binary("and", std::move(result), std::move(comparison), line);
      left = std::move(right_copy);
    }
    return result != nullptr ? std::move(result) : std::move(left);
  }

  static ExprPtr clone(const Expr& e) {
    auto copy = std::make_unique<Expr>();
    copy->type = e.type;
    copy->line = e.line;
    copy->literal = e.literal;
    copy->name = e.name;
    copy->negated = e.negated;
    for (const ExprPtr& child : e.children)
      copy->children.push_back(child ? clone(*child) : nullptr);
    for (const auto& [key, value] : e.keywords) copy->keywords.emplace_back(key, clone(*value));
    return copy;
  }

  template <typename Next>
  StatusOr<ExprPtr> parse_left_assoc(std::initializer_list<const char*> ops, Next next_level) {
    MOESERVE_ASSIGN_OR_RETURN(ExprPtr left, (this->*next_level)());
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (at_op(op)) matched = op;
      }
      if (matched == nullptr) return left;
      const int line = next().line;
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr right, (this->*next_level)());
      left = binary(matched, std::move(left), std::move(right), line);
    }
  }

  StatusOr<ExprPtr> parse_math1() { return parse_left_assoc({"+", "-"}, &Parser::parse_concat); }
  StatusOr<ExprPtr> parse_concat() { return parse_left_assoc({"~"}, &Parser::parse_math2); }
  StatusOr<ExprPtr> parse_math2() {
    return parse_left_assoc({"*", "/", "//", "%"}, &Parser::parse_pow);
  }
  StatusOr<ExprPtr> parse_pow() { return parse_left_assoc({"**"}, &Parser::parse_unary_filtered); }
  StatusOr<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  StatusOr<ExprPtr> parse_unary(bool with_filter) {
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      node = make(Expr::Type::kUnary, t.line, t.text);
      node->children.push_back(std::move(operand));
    } else {
      MOESERVE_ASSIGN_OR_RETURN(node, parse_primary());
    }
    MOESERVE_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    if (!with_filter) return node;
    while (true) {
      if (at_op("|")) {
        next();
        MOESERVE_ASSIGN_OR_RETURN(node, parse_filter(std::move(node)));
      } else if (at_name("is")) {
        next();
        MOESERVE_ASSIGN_OR_RETURN(node, parse_test(std::move(node)));
      } else if (at_op("(")) {
        MOESERVE_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  StatusOr<ExprPtr> parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Token::Type::kName: {
        next();
        ExprPtr e = make(Expr::Type::kLiteral, t.line);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::none();
        } else {
          e = make(Expr::Type::kName, t.line, t.text);
        }
        return e;
      }
      case Token::Type::kString: {
        std::string text;
        const int line = t.line;
        while (peek().type == Token::Type::kString) text += next().text;
        ExprPtr e = make(Expr::Type::kLiteral, line);
        e->literal = Value::string(std::move(text));
        return e;
      }
      case Token::Type::kInt:
      case Token::Type::kFloat: {
        next();
        ExprPtr e = make(Expr::Type::kLiteral, t.line);
        e->literal =
            t.type == Token::Type::kInt ? Value::integer(t.integer) : Value::number(t.number);
        return e;
      }
      case Token::Type::kOp:
        if (t.text == "(") {
          next();
          if (accept_op(")")) return make(Expr::Type::kList, t.line);
          MOESERVE_ASSIGN_OR_RETURN(ExprPtr inner, parse_tuple());
          MOESERVE_RETURN_IF_ERROR(expect_op(")"));
          return inner;
        }
        if (t.text == "[") {
          next();
          ExprPtr list = make(Expr::Type::kList, t.line);
          while (!accept_op("]")) {
            if (!list->children.empty()) MOESERVE_RETURN_IF_ERROR(expect_op(","));
            if (accept_op("]")) break;
            MOESERVE_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
            list->children.push_back(std::move(item));
          }
          return list;
        }
        if (t.text == "{") {
          next();
          ExprPtr dict = make(Expr::Type::kDict, t.line);
          while (!accept_op("}")) {
            if (!dict->children.empty()) MOESERVE_RETURN_IF_ERROR(expect_op(","));
            if (accept_op("}")) break;
            MOESERVE_ASSIGN_OR_RETURN(ExprPtr key, parse_expression());
            MOESERVE_RETURN_IF_ERROR(expect_op(":"));
            MOESERVE_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
            dict->children.push_back(std::move(key));
            dict->children.push_back(std::move(value));
          }
          return dict;
        }
        break;
      default: break;
    }
    return error_at(t.line, "unexpected " + describe(t));
  }

  StatusOr<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".")) {
        const int line = next().line;
        if (peek().type == Token::Type::kInt) {
          ExprPtr item = make(Expr::Type::kItem, line);
          ExprPtr index = make(Expr::Type::kLiteral, line);
          index->literal = Value::integer(next().integer);
          item->children.push_back(std::move(node));
          item->children.push_back(std::move(index));
          node = std::move(item);
          continue;
        }
        MOESERVE_ASSIGN_OR_RETURN(std::string attr, expect_identifier());
        ExprPtr e = make(Expr::Type::kAttr, line, std::move(attr));
        e->children.push_back(std::move(node));
        node = std::move(e);
      } else if (at_op("[")) {
        const int line = next().line;
        MOESERVE_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node), line));
      } else if (at_op("(")) {
        MOESERVE_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  StatusOr<ExprPtr> parse_subscript(ExprPtr target, int line) {
    ExprPtr parts[3];
    int colons = 0;
    for (int i = 0; i < 3; ++i) {
      if (!at_op(":") && !at_op("]")) {
        MOESERVE_ASSIGN_OR_RETURN(parts[i], parse_expression());
      }
      if (i < 2 && accept_op(":")) {
        ++colons;
        continue;
      }
      break;
    }
    MOESERVE_RETURN_IF_ERROR(expect_op("]"));
    if (colons == 0) {
      if (parts[0] == nullptr) return error_at(line, "empty subscript");
      ExprPtr item = make(Expr::Type::kItem, line);
      item->children.push_back(std::move(target));
      item->children.push_back(std::move(parts[0]));
      return item;
    }
    ExprPtr slice = make(Expr::Type::kSlice, line);
    slice->children.push_back(std::move(target));
    for (ExprPtr& part : parts) slice->children.push_back(std::move(part));
    return slice;
  }

  // Arguments in parentheses into e->children (after what is there) and e->keywords.
  Status parse_args(Expr* e) {
    MOESERVE_RETURN_IF_ERROR(expect_op("("));
    bool first = true;
    while (!accept_op(")")) {
      if (!first) MOESERVE_RETURN_IF_ERROR(expect_op(","));
      first = false;
      if (accept_op(")")) break;
      if (peek().type == Token::Type::kName && peek(1).type == Token::Type::kOp &&
          peek(1).text == "=") {
        std::string key = next().text;
        next();
        MOESERVE_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        e->keywords.emplace_back(std::move(key), std::move(value));
      } else {
        if (!e->keywords.empty()) {
          return error_at(peek().line, "a positional argument follows a keyword argument");
        }
        MOESERVE_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        e->children.push_back(std::move(value));
      }
    }
    return ok_status();
  }

  StatusOr<ExprPtr> parse_call(ExprPtr callee) {
    ExprPtr call = make(Expr::Type::kCall, peek().line);
    call->children.push_back(std::move(callee));
    MOESERVE_RETURN_IF_ERROR(parse_args(call.get()));
    return call;
  }

  StatusOr<ExprPtr> parse_filter(ExprPtr input) {
    const int line = peek().line;
    MOESERVE_ASSIGN_OR_RETURN(std::string name, expect_identifier());
    while (accept_op(".")) {
      MOESERVE_ASSIGN_OR_RETURN(std::string part, expect_identifier());
      name += "." + part;
    }
    ExprPtr filter = make(Expr::Type::kFilter, line, std::move(name));
    filter->children.push_back(std::move(input));
    if (at_op("(")) MOESERVE_RETURN_IF_ERROR(parse_args(filter.get()));
    return filter;
  }

  StatusOr<ExprPtr> parse_test(ExprPtr input) {
    const int line = peek().line;
    const bool negated = accept_name("not");
    MOESERVE_ASSIGN_OR_RETURN(std::string name, expect_identifier());
    ExprPtr test = make(Expr::Type::kTest, line, std::move(name));
    test->negated = negated;
    test->children.push_back(std::move(input));
    if (at_op("(")) {
      MOESERVE_RETURN_IF_ERROR(parse_args(test.get()));
    } else if ((peek().type == Token::Type::kName && !at_name("else") && !at_name("or") &&
                !at_name("and") && !at_name("if") && !at_name("in") && !at_name("not") &&
                !at_name("is")) ||
               peek().type == Token::Type::kString || peek().type == Token::Type::kInt ||
               peek().type == Token::Type::kFloat || at_op("[") || at_op("{")) {
      MOESERVE_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
      MOESERVE_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
      test->children.push_back(std::move(arg));
    }
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

StatusOr<Body> parse(std::string_view source) {
  Lexer lexer(source);
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Token> tokens, lexer.run());
  Parser parser(std::move(tokens));
  return parser.parse_template();
}

}  // namespace moeserve::jinja
