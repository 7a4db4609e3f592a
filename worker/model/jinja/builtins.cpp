#include "worker/model/jinja/builtins.h"

#include <algorithm>
#include <cmath>

namespace moeserve::jinja {
namespace {

Status type_error(const std::string& message) { return invalid_argument_error(message); }

// Decodes the code point at s[i] (invalid bytes as themselves), advancing i.
uint32_t next_code_point(std::string_view s, size_t* i) {
  const unsigned char c = static_cast<unsigned char>(s[*i]);
  int length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (*i + static_cast<size_t>(length) > s.size()) length = 1;
  uint32_t cp = length == 1 ? c : c & (0x7F >> length);
  for (int k = 1; k < length; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3F);
  *i += static_cast<size_t>(length);
  return cp;
}

// Python's str.isspace() code points.
bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<std::string_view> code_points(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    next_code_point(s, &i);
    out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool is_space_char(std::string_view ch) {
  size_t i = 0;
  return is_python_space(next_code_point(ch, &i));
}

// str.strip/lstrip/rstrip: `chars` null strips whitespace.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::vector<std::string_view> cps = code_points(s);
  const auto strippable = [&](std::string_view ch) {
    if (chars == nullptr) return is_space_char(ch);
    for (std::string_view c : code_points(*chars)) {
      if (c == ch) return true;
    }
    return false;
  };
  size_t begin = 0, end = cps.size();
  while (left && begin < end && strippable(cps[begin])) ++begin;
  while (right && end > begin && strippable(cps[end - 1])) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i) out += cps[i];
  return out;
}

std::string ascii_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_title(std::string s) {
  bool previous_cased = false;
  for (char& c : s) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    if (alpha) {
      c = static_cast<char>(previous_cased ? std::tolower(static_cast<unsigned char>(c))
                                           : std::toupper(static_cast<unsigned char>(c)));
    }
    previous_cased = alpha;
  }
  return s;
}
std::string ascii_capitalize(std::string s) {
  s = ascii_lower(std::move(s));
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::vector<Value> split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<Value> parts;
  if (sep == nullptr || sep->is_none()) {
    // Runs of whitespace separate; leading and trailing whitespace yields nothing.
    const std::vector<std::string_view> cps = code_points(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_space_char(cps[i])) ++i;
      if (i == cps.size()) break;
      std::string word;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        for (; i < cps.size(); ++i) word += cps[i];
        word = strip(word, nullptr, false, true);
      } else {
        for (; i < cps.size() && !is_space_char(cps[i]); ++i) word += cps[i];
      }
      parts.push_back(Value::string(std::move(word)));
    }
    return parts;
  }
  const std::string& delimiter = sep->as_string();
  size_t from = 0;
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    const size_t at = s.find(delimiter, from);
    if (at == std::string::npos) break;
    parts.push_back(Value::string(s.substr(from, at - from)));
    from = at + delimiter.size();
  }
  parts.push_back(Value::string(s.substr(from)));
  return parts;
}

std::vector<Value> rsplit(const std::string& s, const std::string& delimiter, int64_t maxsplit) {
  std::vector<Value> parts;
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    if (end < delimiter.size()) break;
    const size_t at = s.rfind(delimiter, end - delimiter.size());
    if (at == std::string::npos) break;
    parts.push_back(Value::string(s.substr(at + delimiter.size(), end - at - delimiter.size())));
    end = at;
  }
  parts.push_back(Value::string(s.substr(0, end)));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

StatusOr<std::string> string_arg(const CallArgs& args, std::string_view name, size_t index,
                                 const std::string& method) {
  const Value* v = args.get(name, index);
  if (v == nullptr || !v->is_string()) {
    return type_error(method + "() needs a string argument '" + std::string(name) + "'");
  }
  return v->as_string();
}

int64_t int_arg(const CallArgs& args, std::string_view name, size_t index, int64_t fallback) {
  const Value* v = args.get(name, index);
  return v != nullptr && v->kind() == Value::Kind::kInt ? v->as_int() : fallback;
}

bool bool_arg(const CallArgs& args, std::string_view name, size_t index, bool fallback) {
  const Value* v = args.get(name, index);
  return v != nullptr && !v->is_undefined() ? v->truthy() : fallback;
}

// Code point index of a byte offset.
int64_t code_point_index(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(utf8_code_points(std::string_view(s).substr(0, byte_offset)));
}

StatusOr<bool> affix_test(const std::string& s, const Value& affix, bool prefix,
                          const std::string& method) {
  if (affix.is_string()) {
    return prefix ? s.starts_with(affix.as_string()) : s.ends_with(affix.as_string());
  }
  if (affix.is_list()) {
    for (const Value& item : affix.as_list()) {
      MOESERVE_ASSIGN_OR_RETURN(const bool hit, affix_test(s, item, prefix, method));
      if (hit) return true;
    }
    return false;
  }
  return type_error(method + "() needs a string or a tuple of strings");
}

StatusOr<Value> string_method(const std::string& s, const std::string& name, const CallArgs& args) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const Value* chars = args.get("chars", 0);
    const std::string* set = chars != nullptr && chars->is_string() ? &chars->as_string() : nullptr;
    return Value::string(strip(s, set, name != "rstrip", name != "lstrip"));
  }
  if (name == "split") {
    return Value::list(split(s, args.get("sep", 0), int_arg(args, "maxsplit", 1, -1)));
  }
  if (name == "rsplit") {
    const Value* sep = args.get("sep", 0);
    if (sep == nullptr || !sep->is_string()) {
      return type_error("rsplit() is supported with a string separator only");
    }
    return Value::list(rsplit(s, sep->as_string(), int_arg(args, "maxsplit", 1, -1)));
  }
  if (name == "startswith" || name == "endswith") {
    const Value* affix = args.get("prefix", 0);
    if (affix == nullptr) return type_error(name + "() needs an argument");
    MOESERVE_ASSIGN_OR_RETURN(const bool hit, affix_test(s, *affix, name == "startswith", name));
    return Value::boolean(hit);
  }
  if (name == "upper") return Value::string(ascii_upper(s));
  if (name == "lower") return Value::string(ascii_lower(s));
  if (name == "title") return Value::string(ascii_title(s));
  if (name == "capitalize") return Value::string(ascii_capitalize(s));
  if (name == "replace") {
    MOESERVE_ASSIGN_OR_RETURN(const std::string old, string_arg(args, "old", 0, name));
    MOESERVE_ASSIGN_OR_RETURN(const std::string replacement, string_arg(args, "new", 1, name));
    int64_t count = int_arg(args, "count", 2, -1);
    std::string out;
    size_t from = 0;
    if (old.empty()) return Value::string(s);
    while (count != 0) {
      const size_t at = s.find(old, from);
      if (at == std::string::npos) break;
      out += s.substr(from, at - from) + replacement;
      from = at + old.size();
      if (count > 0) --count;
    }
    return Value::string(out + s.substr(from));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    MOESERVE_ASSIGN_OR_RETURN(const std::string sub, string_arg(args, "sub", 0, name));
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_code_points(s)) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) {
        ++n;
      }
      return Value::integer(n);
    }
    const size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
    return Value::integer(at == std::string::npos ? -1 : code_point_index(s, at));
  }
  if (name == "join") {
    const Value* items = args.get("iterable", 0);
    if (items == nullptr) return type_error("join() needs an iterable");
    MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> parts, iterate(*items));
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].is_string()) {
        return type_error("join(): item " + std::to_string(i) + " is " + parts[i].type_name() +
                          ", not str");
      }
      if (i > 0) out += s;
      out += parts[i].as_string();
    }
    return Value::string(out);
  }
  if (name == "splitlines") {
    std::vector<Value> lines;
    size_t from = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        lines.push_back(Value::string(s.substr(from, i - from)));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        from = i + 1;
      }
    }
    if (from < s.size()) lines.push_back(Value::string(s.substr(from)));
    return Value::list(std::move(lines));
  }
  const auto all_of = [&](int (*pred)(int)) {
    return Value::boolean(!s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
      return pred(static_cast<unsigned char>(c)) != 0;
    }));
  };
  if (name == "isdigit") return all_of(&isdigit);
  if (name == "isalpha") return all_of(&isalpha);
  if (name == "isalnum") return all_of(&isalnum);
  if (name == "isspace") return all_of(&isspace);
  if (name == "islower" || name == "isupper") {
    const bool has_cased = std::any_of(s.begin(), s.end(), [](char c) {
      return std::isalpha(static_cast<unsigned char>(c)) != 0;
    });
    const std::string folded = name == "islower" ? ascii_lower(s) : ascii_upper(s);
    return Value::boolean(has_cased && folded == s);
  }
  return type_error("str has no method '" + name + "'");
}

bool is_string_method(const std::string& name) {
  static const char* const kMethods[] = {
      "strip",    "lstrip",  "rstrip",  "split",   "rsplit",     "startswith",
      "endswith", "upper",   "lower",   "title",   "capitalize", "replace",
      "find",     "rfind",   "count",   "join",    "splitlines", "isdigit",
      "isalpha",  "isalnum", "isspace", "islower", "isupper"};
  return std::find(std::begin(kMethods), std::end(kMethods), name) != std::end(kMethods);
}

Value items_of(const Dict& d) {
  std::vector<Value> items;
  for (const auto& [key, value] : d.entries) {
    items.push_back(Value::list({Value::string(key), value}));
  }
  return Value::list(std::move(items));
}

StatusOr<Value> dict_method(const Dict& d, const std::string& name, const CallArgs& args) {
  if (name == "items") return items_of(d);
  std::vector<Value> out;
  if (name == "keys") {
    for (const auto& entry : d.entries) out.push_back(Value::string(entry.first));
    return Value::list(std::move(out));
  }
  if (name == "values") {
    for (const auto& entry : d.entries) out.push_back(entry.second);
    return Value::list(std::move(out));
  }
  // get
  const Value* key = args.get("key", 0);
  if (key == nullptr) return type_error("get() needs a key");
  const Value* fallback = args.get("default", 1);
  const Value* found = key->is_string() ? d.find(key->as_string()) : nullptr;
  return found != nullptr ? *found : fallback != nullptr ? *fallback : Value::none();
}

// Python's int(x) for the cases templates use.
StatusOr<Value> to_int(const Value& v, const Value& fallback) {
  switch (v.kind()) {
    case Value::Kind::kInt: return v;
    case Value::Kind::kBool: return Value::integer(v.as_bool() ? 1 : 0);
    case Value::Kind::kFloat:
      return Value::integer(static_cast<int64_t>(std::trunc(v.as_double())));
    case Value::Kind::kString: {
      const std::string text = strip(v.as_string(), nullptr, true, true);
      try {
        size_t used = 0;
        const int64_t i = std::stoll(text, &used);
        if (used == text.size()) return Value::integer(i);
      } catch (const std::exception&) {
      }
      return fallback;
    }
    default: return fallback;
  }
}

StatusOr<bool> less_than(const Value& a, const Value& b) {
  const bool a_num = a.is_number() || a.kind() == Value::Kind::kBool;
  const bool b_num = b.is_number() || b.kind() == Value::Kind::kBool;
  if (a_num && b_num) {
    const double x = a.kind() == Value::Kind::kBool ? a.as_bool() : a.as_double();
    const double y = b.kind() == Value::Kind::kBool ? b.as_bool() : b.as_double();
    return x < y;
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list()) {
    const auto& x = a.as_list();
    const auto& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (x[i].equals(y[i])) continue;
      return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return type_error("'<' is not supported between " + a.type_name() + " and " + b.type_name());
}

// An attribute path "a.b" of filters like selectattr and map.
StatusOr<Value> attribute_path(const Value& v, const std::string& path) {
  Value current = v;
  size_t from = 0;
  while (true) {
    const size_t dot = path.find('.', from);
    const std::string part = path.substr(from, dot == std::string::npos ? dot : dot - from);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    MOESERVE_ASSIGN_OR_RETURN(current, numeric ? get_item(current, Value::integer(std::stoll(part)))
                                               : get_item(current, Value::string(part)));
    if (dot == std::string::npos) return current;
    from = dot + 1;
  }
}

// The arguments after the first `skip` positional ones.
CallArgs shift(const CallArgs& args, size_t skip) {
  CallArgs rest;
  for (size_t i = skip; i < args.positional.size(); ++i)
    rest.positional.push_back(args.positional[i]);
  rest.keyword = args.keyword;
  return rest;
}

StatusOr<Value> select_filter(const std::string& name, const Value& input, const CallArgs& args) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep = name == "select" || name == "selectattr";
  MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
  size_t next_arg = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return type_error(name + " needs an attribute name");
    }
    attr = args.positional[0].as_string();
    next_arg = 1;
  }
  std::string test;
  if (args.positional.size() > next_arg) {
    if (!args.positional[next_arg].is_string()) return type_error(name + ": the test is a name");
    test = args.positional[next_arg].as_string();
  }
  const CallArgs test_args = shift(args, next_arg + 1);
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attr) {
      MOESERVE_ASSIGN_OR_RETURN(subject, attribute_path(item, attr));
    }
    bool pass = subject.truthy();
    if (!test.empty()) {
      MOESERVE_ASSIGN_OR_RETURN(pass, apply_test(test, subject, test_args));
    }
    if (pass == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

StatusOr<Value> map_filter(const Value& input, const CallArgs& args) {
  MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
  std::vector<Value> out;
  if (const Value* attr = args.get("attribute", 99); attr != nullptr) {
    const Value* fallback = args.get("default", 99);
    for (const Value& item : items) {
      MOESERVE_ASSIGN_OR_RETURN(Value v, attribute_path(item, attr->to_string()));
      out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : v);
    }
    return Value::list(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    return type_error("map needs a filter name or attribute=");
  }
  const CallArgs rest = shift(args, 1);
  for (const Value& item : items) {
    MOESERVE_ASSIGN_OR_RETURN(Value v, apply_filter(args.positional[0].as_string(), item, rest));
    out.push_back(std::move(v));
  }
  return Value::list(std::move(out));
}

StatusOr<Value> sort_filter(const Value& input, const CallArgs& args) {
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
  const bool reverse = bool_arg(args, "reverse", 0, false);
  const Value* attr = args.get("attribute", 2);
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = item;
    if (attr != nullptr) {
      MOESERVE_ASSIGN_OR_RETURN(key, attribute_path(item, attr->to_string()));
    }
    if (key.is_string() && !bool_arg(args, "case_sensitive", 1, false)) {
      key = Value::string(ascii_lower(key.as_string()));
    }
    keyed.emplace_back(std::move(key), std::move(item));
  }
  Status failure;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    StatusOr<bool> lt = reverse ? less_than(b.first, a.first) : less_than(a.first, b.first);
    if (!lt.ok()) failure = lt.status();
    return lt.ok() && *lt;
  });
  MOESERVE_RETURN_IF_ERROR(failure);
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::list(std::move(out));
}

StatusOr<Value> indent_filter(const Value& input, const CallArgs& args) {
  const Value* width_value = args.get("width", 0);
  std::string pad = width_value != nullptr && width_value->is_string()
                        ? width_value->as_string()
                        : std::string(static_cast<size_t>(int_arg(args, "width", 0, 4)), ' ');
  const bool first = bool_arg(args, "first", 1, false);
  const bool blank = bool_arg(args, "blank", 2, false);
  const std::string s = input.to_string();
  std::string out;
  size_t from = 0;
  bool first_line = true;
  while (true) {
    const size_t nl = s.find('\n', from);
    const std::string line = s.substr(from, nl == std::string::npos ? nl : nl - from);
    const bool pad_it = (first_line ? first : true) && (blank || !line.empty());
    out += (pad_it ? pad : "") + line;
    if (nl == std::string::npos) break;
    out += "\n";
    from = nl + 1;
    first_line = false;
  }
  return Value::string(out);
}

StatusOr<Value> min_max(const Value& input, bool want_max) {
  MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
  if (items.empty()) return Value();
  Value best = items[0];
  for (size_t i = 1; i < items.size(); ++i) {
    MOESERVE_ASSIGN_OR_RETURN(const bool lt,
                              want_max ? less_than(best, items[i]) : less_than(items[i], best));
    if (lt) best = items[i];
  }
  return best;
}

StatusOr<Value> length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return Value::integer(static_cast<int64_t>(utf8_code_points(v.as_string())));
    case Value::Kind::kList: return Value::integer(static_cast<int64_t>(v.as_list().size()));
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return Value::integer(static_cast<int64_t>(v.as_dict().entries.size()));
    case Value::Kind::kUndefined: return Value::integer(0);
    default: return type_error("object of type '" + v.type_name() + "' has no len()");
  }
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

StatusOr<Value> range_function(const CallArgs& args) {
  int64_t start = 0, stop = 0, step = 1;
  for (const Value& v : args.positional) {
    if (v.kind() != Value::Kind::kInt) return type_error("range() takes integers");
  }
  if (args.positional.size() == 1) {
    stop = args.positional[0].as_int();
  } else if (args.positional.size() == 2 || args.positional.size() == 3) {
    start = args.positional[0].as_int();
    stop = args.positional[1].as_int();
    if (args.positional.size() == 3) step = args.positional[2].as_int();
  } else {
    return type_error("range() takes 1 to 3 arguments");
  }
  if (step == 0) return type_error("range() step must not be zero");
  constexpr int64_t kMaxRange = 1 << 20;  // a template has no business building more
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) return type_error("range() is too large");
    out.push_back(Value::integer(i));
  }
  return Value::list(std::move(out));
}

StatusOr<Value> dict_from_args(const CallArgs& args, bool as_namespace) {
  Dict d;
  if (!args.positional.empty()) {
    if (args.positional.size() > 1 || !args.positional[0].is_mapping()) {
      return type_error(std::string(as_namespace ? "namespace" : "dict") +
                        "() takes a dict and keyword arguments");
    }
    d = args.positional[0].as_dict();
  }
  for (const auto& [key, value] : args.keyword) d.set(key, value);
  return as_namespace ? Value::namespace_of(std::move(d)) : Value::dict(std::move(d));
}

int64_t python_floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace

StatusOr<std::vector<Value>> iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kList: return value.as_list();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      std::vector<Value> keys;
      for (const auto& entry : value.as_dict().entries) keys.push_back(Value::string(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (std::string_view ch : code_points(value.as_string())) {
        chars.push_back(Value::string(std::string(ch)));
      }
      return chars;
    }
    case Value::Kind::kUndefined: return std::vector<Value>();
    default: return type_error("'" + value.type_name() + "' object is not iterable");
  }
}

StatusOr<Value> get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      return type_error("cannot read '" + name + "' of an undefined value");
    case Value::Kind::kString:
      if (is_string_method(name)) {
        const std::string s = object.as_string();
        return Value::callable("str." + name, [s, name](const CallArgs& args) {
          return string_method(s, name, args);
        });
      }
      return Value();
    case Value::Kind::kDict:
      if (name == "items" || name == "keys" || name == "values" || name == "get") {
        const Value d = object;
        return Value::callable("dict." + name, [d, name](const CallArgs& args) {
          return dict_method(d.as_dict(), name, args);
        });
      }
      [[fallthrough]];
    case Value::Kind::kNamespace: {
      const Value* found = object.as_dict().find(name);
      return found != nullptr ? *found : Value();
    }
    default: return Value();
  }
}

StatusOr<Value> get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      return type_error("cannot index an undefined value with " + key.repr());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      if (key.is_string()) {
        const Value* found = object.as_dict().find(key.as_string());
        if (found != nullptr) return *found;
        return get_attribute(object, key.as_string());
      }
      return Value();
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.kind() != Value::Kind::kInt) {
        return key.is_string() ? get_attribute(object, key.as_string()) : Value();
      }
      const bool is_list = object.is_list();
      const std::vector<size_t> offsets =
          is_list ? std::vector<size_t>() : utf8_offsets(object.as_string());
      const int64_t size = is_list ? static_cast<int64_t>(object.as_list().size())
                                   : static_cast<int64_t>(offsets.size()) - 1;
      int64_t i = key.as_int();
      if (i < 0) i += size;
      if (i < 0 || i >= size) return Value();
      if (is_list) return object.as_list()[static_cast<size_t>(i)];
      const size_t from = offsets[static_cast<size_t>(i)];
      return Value::string(
          object.as_string().substr(from, offsets[static_cast<size_t>(i) + 1] - from));
    }
    default: return key.is_string() ? get_attribute(object, key.as_string()) : Value();
  }
}

StatusOr<Value> get_slice(const Value& object, const Value* start_v, const Value* stop_v,
                          const Value* step_v) {
  if (!object.is_list() && !object.is_string()) {
    return type_error("cannot slice a " + object.type_name());
  }
  const auto bound = [](const Value* v, const char* what) -> StatusOr<std::optional<int64_t>> {
    if (v == nullptr || v->is_none()) return std::optional<int64_t>();
    if (v->kind() != Value::Kind::kInt)
      return type_error(std::string("slice ") + what + " must be an integer");
    return std::optional<int64_t>(v->as_int());
  };
  MOESERVE_ASSIGN_OR_RETURN(const auto start_opt, bound(start_v, "start"));
  MOESERVE_ASSIGN_OR_RETURN(const auto stop_opt, bound(stop_v, "stop"));
  MOESERVE_ASSIGN_OR_RETURN(const auto step_opt, bound(step_v, "step"));
  const int64_t step = step_opt.value_or(1);
  if (step == 0) return type_error("slice step cannot be zero");
  const std::vector<size_t> offsets =
      object.is_string() ? utf8_offsets(object.as_string()) : std::vector<size_t>();
  const int64_t size = object.is_list() ? static_cast<int64_t>(object.as_list().size())
                                        : static_cast<int64_t>(offsets.size()) - 1;
  // Python's slice.indices().
  const auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v.has_value()) return fallback;
    int64_t x = *v;
    if (x < 0) x += size;
    if (step > 0) return std::clamp<int64_t>(x, 0, size);
    return std::clamp<int64_t>(x, -1, size - 1);
  };
  const int64_t start = clamp(start_opt, step > 0 ? 0 : size - 1);
  const int64_t stop = clamp(stop_opt, step > 0 ? size : -1);
  std::vector<Value> items;
  std::string text;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (object.is_list()) {
      items.push_back(object.as_list()[static_cast<size_t>(i)]);
    } else {
      const size_t from = offsets[static_cast<size_t>(i)];
      text += object.as_string().substr(from, offsets[static_cast<size_t>(i) + 1] - from);
    }
  }
  return object.is_list() ? Value::list(std::move(items)) : Value::string(std::move(text));
}

StatusOr<Value> binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(a.to_string() + b.to_string());
  if (op == "==") return Value::boolean(a.equals(b));
  if (op == "!=") return Value::boolean(!a.equals(b));
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) return type_error("'in <string>' requires a string on the left");
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_mapping()) {
      found = a.is_string() && b.as_dict().find(a.as_string()) != nullptr;
    } else if (b.is_list()) {
      found = std::any_of(b.as_list().begin(), b.as_list().end(),
                          [&](const Value& item) { return item.equals(a); });
    } else if (!b.is_undefined()) {
      return type_error("argument of type '" + b.type_name() + "' is not iterable");
    }
    return Value::boolean(op == "in" ? found : !found);
  }
  if (a.is_undefined() || b.is_undefined()) {
    return type_error("'" + op + "' on an undefined value");
  }
  if (op == "<") {
    MOESERVE_ASSIGN_OR_RETURN(const bool lt, less_than(a, b));
    return Value::boolean(lt);
  }
  if (op == ">") {
    MOESERVE_ASSIGN_OR_RETURN(const bool lt, less_than(b, a));
    return Value::boolean(lt);
  }
  if (op == "<=" || op == ">=") {
    MOESERVE_ASSIGN_OR_RETURN(const bool lt, op == "<=" ? less_than(b, a) : less_than(a, b));
    return Value::boolean(!lt);
  }
  const auto numeric = [](const Value& v) {
    return v.is_number() || v.kind() == Value::Kind::kBool;
  };
  const auto as_number = [](const Value& v) {
    return v.kind() == Value::Kind::kBool ? Value::integer(v.as_bool() ? 1 : 0) : v;
  };
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value::string(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list()) {
      std::vector<Value> items = a.as_list();
      items.insert(items.end(), b.as_list().begin(), b.as_list().end());
      return Value::list(std::move(items));
    }
  }
  if (op == "*" && (a.is_string() || a.is_list()) && b.kind() == Value::Kind::kInt) {
    if (a.is_string()) {
      std::string out;
      for (int64_t i = 0; i < b.as_int(); ++i) out += a.as_string();
      return Value::string(out);
    }
    std::vector<Value> items;
    for (int64_t i = 0; i < b.as_int(); ++i) {
      items.insert(items.end(), a.as_list().begin(), a.as_list().end());
    }
    return Value::list(std::move(items));
  }
  if (!numeric(a) || !numeric(b)) {
    return type_error("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
                      b.type_name() + "'");
  }
  const Value x = as_number(a), y = as_number(b);
  const bool ints = x.kind() == Value::Kind::kInt && y.kind() == Value::Kind::kInt;
  if (op == "+")
    return ints ? Value::integer(x.as_int() + y.as_int())
                : Value::number(x.as_double() + y.as_double());
  if (op == "-")
    return ints ? Value::integer(x.as_int() - y.as_int())
                : Value::number(x.as_double() - y.as_double());
  if (op == "*")
    return ints ? Value::integer(x.as_int() * y.as_int())
                : Value::number(x.as_double() * y.as_double());
  if (y.as_double() == 0.0 && (op == "/" || op == "//" || op == "%")) {
    return type_error("division by zero");
  }
  if (op == "/") return Value::number(x.as_double() / y.as_double());
  if (op == "//") {
    return ints ? Value::integer(python_floor_div(x.as_int(), y.as_int()))
                : Value::number(std::floor(x.as_double() / y.as_double()));
  }
  if (op == "%") {
    if (ints)
      return Value::integer(x.as_int() - y.as_int() * python_floor_div(x.as_int(), y.as_int()));
    const double r = std::fmod(x.as_double(), y.as_double());
    return Value::number(r != 0 && ((r < 0) != (y.as_double() < 0)) ? r + y.as_double() : r);
  }
  if (op == "**") {
    if (ints && y.as_int() >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < y.as_int(); ++i) r *= x.as_int();
      return Value::integer(r);
    }
    return Value::number(std::pow(x.as_double(), y.as_double()));
  }
  return type_error("unknown operator " + op);
}

StatusOr<Value> apply_filter(const std::string& name, const Value& input, const CallArgs& args) {
  if (name == "tojson") {
    const Value* indent = args.get("indent", 0);
    MOESERVE_ASSIGN_OR_RETURN(std::string json,
                              input.to_json(indent != nullptr && indent->kind() == Value::Kind::kInt
                                                ? static_cast<int>(indent->as_int())
                                                : -1));
    return Value::string(std::move(json));
  }
  if (name == "trim") {
    const Value* chars = args.get("chars", 0);
    const std::string* set = chars != nullptr && chars->is_string() ? &chars->as_string() : nullptr;
    return Value::string(strip(input.to_string(), set, true, true));
  }
  if (name == "length" || name == "count") return length_of(input);
  if (name == "string") return Value::string(input.to_string());
  if (name == "safe") return input;
  if (name == "escape" || name == "e") return Value::string(html_escape(input.to_string()));
  if (name == "upper") return Value::string(ascii_upper(input.to_string()));
  if (name == "lower") return Value::string(ascii_lower(input.to_string()));
  if (name == "title") return Value::string(ascii_title(input.to_string()));
  if (name == "capitalize") return Value::string(ascii_capitalize(input.to_string()));
  if (name == "replace") {
    if (!input.is_string()) return Value::string(input.to_string());
    return string_method(input.as_string(), "replace", args);
  }
  if (name == "default" || name == "d") {
    const Value* fallback = args.get("default_value", 0);
    const bool boolean = bool_arg(args, "boolean", 1, false);
    const bool use_fallback = input.is_undefined() || (boolean && !input.truthy());
    return use_fallback ? (fallback != nullptr ? *fallback : Value::string("")) : input;
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::list({});
    if (!input.is_mapping()) return type_error("items needs a dict, got " + input.type_name());
    return items_of(input.as_dict());
  }
  if (name == "dictsort") {
    if (!input.is_mapping()) return type_error("dictsort needs a dict, got " + input.type_name());
    CallArgs sort_args;
    MOESERVE_ASSIGN_OR_RETURN(Value sorted, sort_filter(items_of(input.as_dict()), sort_args));
    return sorted;
  }
  if (name == "list") {
    MOESERVE_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    return Value::list(std::move(items));
  }
  if (name == "first" || name == "last") {
    MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (input.is_string()) {
      std::vector<std::string_view> cps = code_points(input.as_string());
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
      return Value::string(out);
    }
    MOESERVE_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(input));
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "join") {
    MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
    const Value* sep = args.get("d", 0);
    const Value* attr = args.get("attribute", 1);
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0 && sep != nullptr) out += sep->to_string();
      Value item = items[i];
      if (attr != nullptr) {
        MOESERVE_ASSIGN_OR_RETURN(item, attribute_path(item, attr->to_string()));
      }
      out += item.to_string();
    }
    return Value::string(out);
  }
  if (name == "int") {
    const Value* fallback = args.get("default", 0);
    return to_int(input, fallback != nullptr ? *fallback : Value::integer(0));
  }
  if (name == "float") {
    if (input.is_number()) return Value::number(input.as_double());
    if (input.is_string()) {
      try {
        return Value::number(std::stod(input.as_string()));
      } catch (const std::exception&) {
      }
    }
    const Value* fallback = args.get("default", 0);
    return fallback != nullptr ? *fallback : Value::number(0.0);
  }
  if (name == "abs") {
    if (input.kind() == Value::Kind::kInt) return Value::integer(std::llabs(input.as_int()));
    if (input.is_number()) return Value::number(std::fabs(input.as_double()));
    return type_error("abs needs a number, got " + input.type_name());
  }
  if (name == "round") {
    if (!input.is_number()) return type_error("round needs a number, got " + input.type_name());
    const int64_t precision = int_arg(args, "precision", 0, 0);
    const Value* method = args.get("method", 1);
    const std::string how = method != nullptr ? method->to_string() : "common";
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = input.as_double() * scale;
    const double r = how == "floor" ? std::floor(x) : how == "ceil" ? std::ceil(x) : std::round(x);
    return Value::number(r / scale);
  }
  if (name == "unique") {
    MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
    std::vector<Value> out;
    for (const Value& item : items) {
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return o.equals(item); })) {
        out.push_back(item);
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "sort") return sort_filter(input, args);
  if (name == "min" || name == "max") return min_max(input, name == "max");
  if (name == "sum") {
    MOESERVE_ASSIGN_OR_RETURN(const std::vector<Value> items, iterate(input));
    const Value* attr = args.get("attribute", 0);
    Value total = Value::integer(0);
    for (const Value& item : items) {
      Value v = item;
      if (attr != nullptr) {
        MOESERVE_ASSIGN_OR_RETURN(v, attribute_path(item, attr->to_string()));
      }
      MOESERVE_ASSIGN_OR_RETURN(total, binary_op("+", total, v));
    }
    return total;
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return select_filter(name, input, args);
  }
  if (name == "map") return map_filter(input, args);
  if (name == "indent") return indent_filter(input, args);
  if (name == "wordcount") {
    return Value::integer(static_cast<int64_t>(split(input.to_string(), nullptr, -1).size()));
  }
  return type_error("unknown filter '" + name + "' (supported: " + filter_names() + ")");
}

StatusOr<bool> apply_test(const std::string& name, const Value& v, const CallArgs& args) {
  const Value* arg = args.get("value", 0);
  const auto need_arg = [&]() -> Status {
    return arg != nullptr ? ok_status() : type_error("test '" + name + "' needs an argument");
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == Value::Kind::kBool;
  if (name == "true") return v.kind() == Value::Kind::kBool && v.as_bool();
  if (name == "false") return v.kind() == Value::Kind::kBool && !v.as_bool();
  if (name == "integer") return v.kind() == Value::Kind::kInt;
  if (name == "float") return v.kind() == Value::Kind::kFloat;
  if (name == "number") return v.is_number() || v.kind() == Value::Kind::kBool;
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind() == Value::Kind::kDict;
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_mapping();
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_mapping();
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
  if (name == "odd" || name == "even") {
    if (v.kind() != Value::Kind::kInt) return type_error("test '" + name + "' needs an integer");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    MOESERVE_RETURN_IF_ERROR(need_arg());
    if (v.kind() != Value::Kind::kInt || arg->kind() != Value::Kind::kInt || arg->as_int() == 0) {
      return type_error("test 'divisibleby' needs non-zero integers");
    }
    return v.as_int() % arg->as_int() == 0;
  }
  static const std::pair<const char*, const char*> kComparisons[] = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="},      {"ne", "!="},
      {"!=", "!="}, {"lt", "<"},       {"lessthan", "<"}, {"<", "<"},
      {"le", "<="}, {"<=", "<="},      {"gt", ">"},       {"greaterthan", ">"},
      {">", ">"},   {"ge", ">="},      {">=", ">="},      {"in", "in"}};
  for (const auto& [test, op] : kComparisons) {
    if (name == test) {
      MOESERVE_RETURN_IF_ERROR(need_arg());
      MOESERVE_ASSIGN_OR_RETURN(const Value result, binary_op(op, v, *arg));
      return result.truthy();
    }
  }
  if (name == "sameas") {
    MOESERVE_RETURN_IF_ERROR(need_arg());
    // Python identity: singletons (None, True, False) and the same shared object.
    if (v.kind() != arg->kind()) return false;
    if (v.is_none() || v.kind() == Value::Kind::kBool) return v.equals(*arg);
    return v.is_mapping() && v.equals(*arg);
  }
  return type_error("unknown test '" + name + "' (supported: " + test_names() + ")");
}

Value builtin_global(std::string_view name) {
  if (name == "range") return Value::callable("range", range_function);
  if (name == "namespace") {
    return Value::callable("namespace",
                           [](const CallArgs& args) { return dict_from_args(args, true); });
  }
  if (name == "dict") {
    return Value::callable("dict",
                           [](const CallArgs& args) { return dict_from_args(args, false); });
  }
  if (name == "raise_exception") {
    return Value::callable("raise_exception", [](const CallArgs& args) -> StatusOr<Value> {
      const Value* message = args.get("message", 0);
      return invalid_argument_error("raise_exception: " +
                                    (message != nullptr ? message->to_string() : std::string()));
    });
  }
  return Value();
}

std::string filter_names() {
  return "abs, capitalize, count, d, default, dictsort, e, escape, first, float, indent, int, "
         "items, join, last, length, list, lower, map, max, min, reject, rejectattr, replace, "
         "reverse, round, safe, select, selectattr, sort, string, sum, title, tojson, trim, "
         "unique, upper, wordcount";
}

std::string test_names() {
  return "boolean, callable, defined, divisibleby, eq, equalto, even, false, float, ge, gt, in, "
         "integer, iterable, le, lower, lt, mapping, ne, none, number, odd, sameas, sequence, "
         "string, true, undefined, upper";
}

}  // namespace moeserve::jinja
