#include "common/json_reader.h"

#include <climits>
#include <cmath>
#include <utility>

namespace moeserve {

using nlohmann::json;

std::string join_errors(const std::vector<FieldError>& errors) {
  std::string out;
  for (const FieldError& e : errors) {
    if (!out.empty()) out += "; ";
    out += e.to_string();
  }
  return out;
}

std::string json_quoted(std::string_view text) { return json(std::string(text)).dump(); }

JsonReader::JsonReader(const json& object, std::string path, std::vector<FieldError>* errors)
    : object_(object), path_(std::move(path)), errors_(errors) {
  if (!object_.is_null() && !object_.is_object()) {
    fail(path_.empty() ? kRootPath : path_, "must be an object");
  }
}

std::string JsonReader::path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const json& JsonReader::get(std::string_view key) const {
  static const json kNull;
  if (!object_.is_object()) return kNull;
  auto it = object_.find(std::string(key));
  return it == object_.end() ? kNull : *it;
}

JsonReader JsonReader::child(std::string_view key) const {
  return JsonReader(get(key), path(key), errors_);
}

std::vector<JsonReader> JsonReader::items(std::string_view key) const {
  std::vector<JsonReader> result;
  const json& v = get(key);
  if (v.is_null()) return result;
  if (!v.is_array()) {
    fail(path(key), "must be a list");
    return result;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    result.emplace_back(v[i], path(key) + "[" + std::to_string(i) + "]", errors_);
  }
  return result;
}

void JsonReader::read(std::string_view key, std::string* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (v.is_string()) {
    *out = v.get<std::string>();
  } else {
    fail(path(key), "must be a string");
  }
}

void JsonReader::read(std::string_view key, bool* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (v.is_boolean()) {
    *out = v.get<bool>();
  } else {
    fail(path(key), "must be a boolean");
  }
}

void JsonReader::read(std::string_view key, int64_t* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
             std::fabs(v.get<double>()) < 9e15) {
    *out = static_cast<int64_t>(v.get<double>());
  } else {
    fail(path(key), "must be an integer");
  }
}

void JsonReader::read(std::string_view key, int32_t* out) const {
  int64_t wide = *out;
  read(key, &wide);
  if (wide < INT32_MIN || wide > INT32_MAX) {
    fail(path(key), "out of range");
  } else {
    *out = static_cast<int32_t>(wide);
  }
}

void JsonReader::read(std::string_view key, double* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (v.is_number()) {
    *out = v.get<double>();
  } else {
    fail(path(key), "must be a number");
  }
}

void JsonReader::read(std::string_view key, std::map<std::string, std::string>* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (!v.is_object()) return fail(path(key), "must be an object of strings");
  for (const auto& [k, item] : v.items()) {
    if (item.is_string()) {
      (*out)[k] = item.get<std::string>();
    } else {
      fail(path(key) + "[" + k + "]", "must be a string");
    }
  }
}

void JsonReader::read(std::string_view key, std::vector<std::string>* out) const {
  const json& v = get(key);
  if (v.is_null()) return;
  if (!v.is_array()) return fail(path(key), "must be a list of strings");
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].is_string()) {
      out->push_back(v[i].get<std::string>());
    } else {
      fail(path(key) + "[" + std::to_string(i) + "]", "must be a string");
    }
  }
}

void JsonReader::fail(std::string path, std::string message) const {
  errors_->push_back({std::move(path), std::move(message)});
}

}  // namespace moeserve
