// The library a Jinja template calls into, with Jinja2's and Python's semantics for the
// cases chat templates use: attribute and item lookup (a dict's methods before its keys
// on `.name`, its keys before its methods on `[...]`; a missing one is undefined, and
// looking anything up on undefined is an error), slices, the string methods (strip,
// lstrip, rstrip, split, rsplit, startswith, endswith, upper, lower, title, capitalize,
// replace, find, count, join, splitlines, isdigit/isalpha/isspace/...) and dict methods
// (items, keys, values, get), the filters (see filter_names()), the tests (see
// test_names()) and the global functions range, namespace, dict and raise_exception.
//
// Python's str.upper()/lower()/title() are applied to ASCII letters only; other
// characters pass through unchanged. Errors are plain messages; the interpreter adds the
// template line. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/model/jinja/value.h"

namespace moeserve::jinja {

StatusOr<Value> get_attribute(const Value& object, const std::string& name);
StatusOr<Value> get_item(const Value& object, const Value& key);
// object[start:stop:step]; null pointers are omitted bounds.
StatusOr<Value> get_slice(const Value& object, const Value* start, const Value* stop,
                          const Value* step);

StatusOr<Value> apply_filter(const std::string& name, const Value& input, const CallArgs& args);
StatusOr<bool> apply_test(const std::string& name, const Value& value, const CallArgs& args);
// range, namespace, dict, raise_exception; undefined for any other name.
Value builtin_global(std::string_view name);

// The elements a `for` loop visits: a list's items, a dict's keys, a string's
// characters; nothing for undefined. Other values are an error.
StatusOr<std::vector<Value>> iterate(const Value& value);

// The binary operators (+ - * / // % ** ~ == != < <= > >= in) with Python semantics.
StatusOr<Value> binary_op(const std::string& op, const Value& left, const Value& right);

std::string filter_names();
std::string test_names();

}  // namespace moeserve::jinja
