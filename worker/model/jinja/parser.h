// jinja::parse(): Jinja template text to a syntax tree, with the lexer settings Hugging
// Face renders chat templates with (trim_blocks, lstrip_blocks, a single trailing newline
// of the source dropped), plus `-`/`+` whitespace control on every tag.
//
// Statements: if/elif/else, for (tuple targets, an `if` filter, else), set (to a name, a
// namespace attribute, a tuple of names, or a block up to endset), macro, filter blocks,
// break/continue (the loopcontrols extension), comments. Expressions follow Jinja2's
// grammar and precedence: conditional expressions, or/and/not, chained comparisons,
// in/not in, + - ~ * / // % **, unary -/+, literals (strings with Python escapes,
// adjacent strings joined, ints, floats, lists, tuples, dicts, true/false/none in either
// case), attribute and item access, slices, calls with keyword arguments, filters and
// tests (`is [not] name`, with parenthesised arguments or one bare argument).
//
// Anything else is a parse error naming the template line ("line 3: unknown statement
// 'call'"). Pure; the tree is immutable and owned by the caller.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "worker/model/jinja/value.h"

namespace moeserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Type {
    kLiteral,  // literal
    kName,     // name
    kList,     // children: items
    kDict,     // children: key, value, key, value, ...
    kAttr,     // children[0].name
    kItem,     // children[0][children[1]]
    kSlice,    // children[0][children[1]:children[2]:children[3]] (null: omitted)
    kCall,     // children[0](children[1..], keywords)
    kFilter,   // children[0] | name(children[1..], keywords)
    kTest,     // children[0] is [not] name(children[1..], keywords)
    kUnary,    // name ("not", "-", "+") children[0]
    kBinary,   // children[0] name children[1]; name is an operator, "and", "or", "in", "not in"
    kCondExpr  // children[0] if children[1] else children[2] (null: undefined)
  };
  Type type = Type::kLiteral;
  int line = 1;
  Value literal;
  std::string name;
  bool negated = false;  // kTest: `is not`
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Type {
    kText,
    kOutput,
    kIf,
    kFor,
    kSet,
    kSetBlock,
    kMacro,
    kFilterBlock,
    kBreak,
    kContinue
  };
  Type type = Type::kText;
  int line = 1;
  std::string text;                  // kText
  ExprPtr expr;                      // kOutput, kSet value, kFor iterable, kFilterBlock filter
  std::vector<std::string> targets;  // kFor, kSet, kSetBlock: names; kMacro: its name
  std::string attribute;             // kSet/kSetBlock to targets[0].attribute
  ExprPtr condition;                 // kFor: the `if` filter
  // kIf: one (condition, body) per if/elif, then (null, body) for else.
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;       // kFor, kSetBlock, kMacro, kFilterBlock
  Body else_body;  // kFor
  // kMacro: parameters and their defaults (null: required).
  std::vector<std::pair<std::string, ExprPtr>> params;
};

// Parses template source; errors are invalid_argument naming the line.
StatusOr<Body> parse(std::string_view source);

}  // namespace moeserve::jinja
