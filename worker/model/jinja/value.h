// jinja::Value: the dynamically typed values a Jinja template computes with, modelled on
// the Python objects Jinja2 sees when Hugging Face renders a chat template.
//
// Kinds: undefined (a missing variable, attribute or key: renders as "", is falsy, and
// is an error to index or do arithmetic with, as Jinja2's default Undefined), none,
// bool, int (int64), float (double), string (UTF-8; indexed and measured in code points
// as Python does), list, dict (insertion-ordered string keys, like a Python dict from
// json.loads), namespace (a dict whose attributes `set ns.x = ...` may assign; shared
// by reference) and callable (macros, global functions, bound methods).
//
// to_string() is Python's str() (None, True, 1.0, ['a', 1], {'k': 'v'}); to_json() is
// json.dumps(ensure_ascii=False) as Hugging Face's tojson filter calls it. Values are
// cheap to copy: lists, dicts and callables are shared, and templates never mutate a list
// or dict in place (the sandbox Hugging Face renders in forbids it). Not thread-safe to
// mutate; a rendered template owns all the values it creates.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::jinja {

class Value;

// Arguments of a call: positional, then keyword (in call order).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument named `name`, else positional `index`, else nullptr.
  const Value* get(std::string_view name, size_t index) const;
};

using Function = std::function<StatusOr<Value>(const CallArgs&)>;

struct Dict {
  std::vector<std::pair<std::string, Value>> entries;

  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  Value() = default;  // undefined
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value list(std::vector<Value> items);
  static Value dict(Dict d);
  static Value namespace_of(Dict d);
  static Value callable(std::string name, Function fn);
  // JSON null/bool/number/string/array/object as none/bool/int or float/string/list/dict.
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  // A dict or a namespace: keyed by string.
  bool is_mapping() const { return kind_ == Kind::kDict || kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return int_; }
  // int or float as a double.
  double as_double() const { return kind_ == Kind::kInt ? static_cast<double>(int_) : float_; }
  const std::string& as_string() const { return *string_; }
  const std::vector<Value>& as_list() const { return *list_; }
  const Dict& as_dict() const { return *dict_; }
  // A namespace's attributes, shared by every copy of the value.
  Dict& mutable_namespace() const { return *dict_; }
  StatusOr<Value> call(const CallArgs& args) const { return callable_->second(args); }

  // Python's truthiness.
  bool truthy() const;
  // Python's str(); undefined is "".
  std::string to_string() const;
  // Python's repr() (strings quoted as Python quotes them).
  std::string repr() const;
  // json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=False); indent < 0
  // is None. Undefined and callables are an error.
  StatusOr<std::string> to_json(int indent = -1) const;
  // Python's type name, for error messages ("str", "int", "list", "dict", ...).
  std::string type_name() const;

  // Python's ==.
  bool equals(const Value& other) const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const std::vector<Value>> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const std::pair<std::string, Function>> callable_;
};

// Python's repr() of a float (shortest round trip, "1.0", "1e-05", "inf").
std::string python_float(double d);

// UTF-8 helpers (invalid bytes count as one code point each).
size_t utf8_code_points(std::string_view s);
// The code points of `s` as byte offsets: offsets[i] is where code point i starts,
// offsets.back() == s.size().
std::vector<size_t> utf8_offsets(std::string_view s);

}  // namespace moeserve::jinja
