// jinja::Template: a compiled Jinja template and its interpreter, for the subset of
// Jinja2 that model chat templates use (parser.h lists the syntax, builtins.h the
// filters, tests, methods and global functions).
//
// Semantics follow Jinja2 as Hugging Face configures it for chat templates: undefined
// variables render as "" and are falsy; `for` loops get a `loop` variable (index,
// index0, revindex, revindex0, first, last, length, previtem, nextitem, cycle) and their
// own scope, so a `set` inside a loop is not seen after it (hence namespace()); `if`
// blocks share the enclosing scope; macros see the template's top-level variables and
// their arguments, and return their output as a string.
//
// Errors (a parse error, an unknown filter, an operation on the wrong types,
// raise_exception(...)) are invalid_argument naming the template line:
// "line 12: raise_exception: Conversation roles must alternate". Rendering stops at a
// nesting depth of kMaxDepth (runaway macro recursion). A Template is immutable;
// render() is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/model/jinja/value.h"

namespace moeserve::jinja {

struct Node;

inline constexpr int kMaxDepth = 64;

class Template {
 public:
  static StatusOr<Template> parse(std::string_view source);

  // Renders with `variables` as the top-level names, on top of the global functions
  // (range, namespace, dict, raise_exception), which a variable of the same name hides.
  StatusOr<std::string> render(const Dict& variables) const;

 private:
  struct Tree;
  explicit Template(std::shared_ptr<const Tree> tree) : tree_(std::move(tree)) {}
  std::shared_ptr<const Tree> tree_;
};

}  // namespace moeserve::jinja
