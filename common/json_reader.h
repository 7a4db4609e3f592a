// JsonReader: reads typed fields of one JSON object into C++ values that already hold
// their defaults, recording every type error with the field's path instead of failing.
//
//   std::vector<FieldError> errors;
//   JsonReader spec(object["spec"], "spec", &errors);
//   spec.child("worker").read("port", &port);  // "spec.worker.port: must be an integer"
//
// An absent or null field leaves the target untouched (its default stays); a field of
// the wrong type appends a FieldError and leaves it untouched too, so a caller always
// ends with a usable value and a complete list of what was wrong. Integers accept
// whole-valued JSON floats (YAML and some clients write 2.0). The reader keeps a
// reference to the JSON it reads and a pointer to the error list: both must outlive
// it. Pure; not thread-safe (it appends to the caller's list).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve {

// One violated rule: `path` is the field ("spec.parallelism.expertParallel"),
// `message` what is wrong with it.
struct FieldError {
  std::string path;
  std::string message;

  std::string to_string() const { return path + ": " + message; }
  friend bool operator==(const FieldError&, const FieldError&) = default;
};

// "a: x; b: y", in order.
std::string join_errors(const std::vector<FieldError>& errors);

// `text` as a JSON string literal ("\"fp8\""), for quoting values in error messages.
std::string json_quoted(std::string_view text);

class JsonReader {
 public:
  // `object` should be an object or null (absent); anything else is reported at `path`
  // ("" is the document itself: reported at kRootPath).
  JsonReader(const nlohmann::json& object, std::string path, std::vector<FieldError>* errors);

  static constexpr const char* kRootPath = "(document)";

  // "<path>.<key>", or "<key>" for the document itself.
  std::string path(std::string_view key) const;
  // The field, or null when absent (or when this is not an object).
  const nlohmann::json& get(std::string_view key) const;
  // A reader of the object at `key` (reports "must be an object" when it is not one).
  JsonReader child(std::string_view key) const;
  // The elements of a list field, each a reader at "<path>.<key>[i]"; empty when absent
  // or not a list (reported).
  std::vector<JsonReader> items(std::string_view key) const;
  const nlohmann::json& self() const { return object_; }

  void read(std::string_view key, std::string* out) const;
  void read(std::string_view key, bool* out) const;
  void read(std::string_view key, int64_t* out) const;
  void read(std::string_view key, int32_t* out) const;  // also "out of range"
  void read(std::string_view key, double* out) const;
  void read(std::string_view key, std::map<std::string, std::string>* out) const;
  void read(std::string_view key, std::vector<std::string>* out) const;
  // Sets *out when the field is present; to T{} when it has the wrong type (reported),
  // so rules on the value still run.
  template <typename T>
  void read(std::string_view key, std::optional<T>* out) const {
    if (get(key).is_null()) return;
    T value{};
    read(key, &value);
    *out = value;
  }

  // Appends a FieldError.
  void fail(std::string path, std::string message) const;

 private:
  const nlohmann::json& object_;
  std::string path_;
  std::vector<FieldError>* errors_;
};

}  // namespace moeserve
