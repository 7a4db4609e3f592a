#include "operator/autoscaler/prometheus_text.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace moeserve::autoscaler {
namespace {

bool name_start(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
bool name_char(char c, bool colon) { return name_start(c, colon) || (c >= '0' && c <= '9'); }

// A cursor over one line; errors name the line and what was expected.
class LineParser {
 public:
  LineParser(std::string_view line, size_t number) : line_(line), number_(number) {}

  Status error(const std::string& what) const {
    return invalid_argument_error("metrics line " + std::to_string(number_) + ": " + what +
                                  " (at column " + std::to_string(pos_ + 1) + ")");
  }
  bool done() const { return pos_ >= line_.size(); }
  char peek() const { return done() ? '\0' : line_[pos_]; }
  void skip_blanks() {
    while (!done() && (line_[pos_] == ' ' || line_[pos_] == '\t')) ++pos_;
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

  // A metric name (colon allowed) or a label name.
  StatusOr<std::string> name(bool colon, const char* what) {
    if (!name_start(peek(), colon)) return error(std::string("expected ") + what);
    const size_t start = pos_;
    while (!done() && name_char(line_[pos_], colon)) ++pos_;
    return std::string(line_.substr(start, pos_ - start));
  }

  StatusOr<std::string> quoted() {
    if (!consume('"')) return error("expected '\"' to open a label value");
    std::string out;
    while (true) {
      if (done()) return error("unterminated label value");
      const char c = line_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (done()) return error("unterminated escape in label value");
      const char e = line_[pos_++];
      if (e == '\\' || e == '"') {
        out.push_back(e);
      } else if (e == 'n') {
        out.push_back('\n');
      } else {
        return error(std::string("unknown escape \\") + e + " in label value");
      }
    }
  }

  // The next blank-separated token ("" at the end of the line).
  std::string_view token() {
    skip_blanks();
    const size_t start = pos_;
    while (!done() && line_[pos_] != ' ' && line_[pos_] != '\t') ++pos_;
    return line_.substr(start, pos_ - start);
  }

  std::string_view rest() {
    skip_blanks();
    return line_.substr(pos_);
  }

 private:
  std::string_view line_;
  size_t number_;
  size_t pos_ = 0;
};

std::optional<double> parse_value(std::string_view token) {
  if (token == "+Inf" || token == "Inf") return std::numeric_limits<double>::infinity();
  if (token == "-Inf") return -std::numeric_limits<double>::infinity();
  if (token == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (token.empty()) return std::nullopt;
  // strtod also reads "inf", "nan" and hex floats, which the format does not allow.
  for (char c : token) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return std::nullopt;
    }
  }
  const std::string text(token);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return std::nullopt;
  return value;
}

bool parse_timestamp(std::string_view token) {
  size_t i = token.size() > 1 && token[0] == '-' ? 1 : 0;
  if (i == token.size()) return false;
  for (; i < token.size(); ++i) {
    if (token[i] < '0' || token[i] > '9') return false;
  }
  return token.size() <= 20;
}

Status parse_comment(LineParser& p) {
  p.consume('#');
  const std::string_view keyword = p.token();
  if (keyword != "HELP" && keyword != "TYPE") return ok_status();  // a plain comment
  p.skip_blanks();
  MOESERVE_ASSIGN_OR_RETURN(std::string name, p.name(true, "a metric name after # HELP/TYPE"));
  if (!p.done() && p.peek() != ' ' && p.peek() != '\t') return p.error("bad metric name");
  if (keyword == "TYPE") {
    const std::string_view type = p.token();
    if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
        type != "untyped") {
      return p.error("unknown metric type '" + std::string(type) + "' for " + name);
    }
    if (!p.rest().empty()) return p.error("unexpected text after the type of " + name);
  }
  return ok_status();
}

StatusOr<Sample> parse_sample(LineParser& p) {
  Sample s;
  MOESERVE_ASSIGN_OR_RETURN(s.name, p.name(true, "a metric name"));
  if (p.consume('{')) {
    while (true) {
      p.skip_blanks();
      if (p.consume('}')) break;
      MOESERVE_ASSIGN_OR_RETURN(std::string label, p.name(false, "a label name or '}'"));
      p.skip_blanks();
      if (!p.consume('=')) return p.error("expected '=' after label name " + label);
      p.skip_blanks();
      MOESERVE_ASSIGN_OR_RETURN(std::string value, p.quoted());
      if (s.label(label)) return p.error("duplicate label " + label + " in " + s.name);
      s.labels.emplace_back(std::move(label), std::move(value));
      p.skip_blanks();
      if (p.consume(',')) continue;
      if (p.consume('}')) break;
      return p.error("expected ',' or '}' in the labels of " + s.name);
    }
  }
  if (!p.done() && p.peek() != ' ' && p.peek() != '\t') {
    return p.error("expected a blank between " + s.name + " and its value");
  }
  const std::string_view value = p.token();
  const std::optional<double> parsed = parse_value(value);
  if (!parsed)
    return p.error("value of " + s.name + " is not a number: '" + std::string(value) + "'");
  s.value = *parsed;
  const std::string_view timestamp = p.token();
  if (!timestamp.empty() && !parse_timestamp(timestamp)) {
    return p.error("bad timestamp '" + std::string(timestamp) + "' for " + s.name);
  }
  if (!p.rest().empty()) return p.error("unexpected text after the sample of " + s.name);
  return s;
}

}  // namespace

std::optional<std::string> Sample::label(std::string_view name) const {
  for (const auto& [k, v] : labels) {
    if (k == name) return v;
  }
  return std::nullopt;
}

StatusOr<std::vector<Sample>> parse_exposition(std::string_view text) {
  std::vector<Sample> out;
  size_t number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    LineParser p(line, number);
    p.skip_blanks();
    if (p.done()) continue;
    if (p.peek() == '#') {
      MOESERVE_RETURN_IF_ERROR(parse_comment(p));
      continue;
    }
    MOESERVE_ASSIGN_OR_RETURN(Sample sample, parse_sample(p));
    out.push_back(std::move(sample));
  }
  return out;
}

}  // namespace moeserve::autoscaler
