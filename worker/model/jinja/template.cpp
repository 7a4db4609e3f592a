#include "worker/model/jinja/template.h"

#include <map>

#include "worker/model/jinja/builtins.h"
#include "worker/model/jinja/parser.h"

namespace moeserve::jinja {

struct Template::Tree {
  Body body;
};

namespace {

// Adds the line to an error that does not name one yet.
Status at_line(const Status& status, int line) {
  if (status.ok() || status.message().starts_with("line ")) return status;
  return invalid_argument_error("line " + std::to_string(line) + ": " + status.message());
}

class Renderer {
 public:
  explicit Renderer(const Dict& variables) {
    frames_.push_back(std::make_shared<Frame>());
    for (const auto& [name, value] : variables.entries) (*frames_[0])[name] = value;
  }

  Status exec(const Body& body, std::string* out) {
    for (const auto& node : body) {
      MOESERVE_RETURN_IF_ERROR(at_line(exec_node(*node, out), node->line));
      if (flow_ != Flow::kNormal) return ok_status();
    }
    return ok_status();
  }

 private:
  using Frame = std::map<std::string, Value, std::less<>>;
  enum class Flow { kNormal, kBreak, kContinue };

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      const auto found = (*it)->find(name);
      if (found != (*it)->end()) return found->second;
    }
    return builtin_global(name);
  }

  void assign(const std::string& name, Value value) { (*frames_.back())[name] = std::move(value); }

  Status assign_targets(const std::vector<std::string>& targets, const Value& value, int line) {
    if (targets.size() == 1) {
      assign(targets[0], value);
      return ok_status();
    }
    if (!value.is_list() || value.as_list().size() != targets.size()) {
      return at_line(invalid_argument_error("cannot unpack " + value.repr() + " into " +
                                            std::to_string(targets.size()) + " names"),
                     line);
    }
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], value.as_list()[i]);
    return ok_status();
  }

  Status exec_node(const Node& node, std::string* out) {
    switch (node.type) {
      case Node::Type::kText: out->append(node.text); return ok_status();
      case Node::Type::kOutput: {
        MOESERVE_ASSIGN_OR_RETURN(const Value v, eval(*node.expr));
        out->append(v.to_string());
        return ok_status();
      }
      case Node::Type::kIf:
        for (const auto& [condition, body] : node.branches) {
          bool take = condition == nullptr;
          if (!take) {
            MOESERVE_ASSIGN_OR_RETURN(const Value c, eval(*condition));
            take = c.truthy();
          }
          if (take) return exec(body, out);
        }
        return ok_status();
      case Node::Type::kFor: return exec_for(node, out);
      case Node::Type::kSet: {
        MOESERVE_ASSIGN_OR_RETURN(const Value v, eval(*node.expr));
        return set(node, v);
      }
      case Node::Type::kSetBlock: {
        std::string captured;
        MOESERVE_RETURN_IF_ERROR(exec(node.body, &captured));
        return set(node, Value::string(std::move(captured)));
      }
      case Node::Type::kMacro: assign(node.targets[0], make_macro(node)); return ok_status();
      case Node::Type::kFilterBlock: {
        std::string captured;
        MOESERVE_RETURN_IF_ERROR(exec(node.body, &captured));
        MOESERVE_ASSIGN_OR_RETURN(const Value v,
                                  filter(*node.expr, Value::string(std::move(captured))));
        out->append(v.to_string());
        return ok_status();
      }
      case Node::Type::kBreak: flow_ = Flow::kBreak; return ok_status();
      case Node::Type::kContinue: flow_ = Flow::kContinue; return ok_status();
    }
    return internal_error("unknown statement");
  }

  Status set(const Node& node, const Value& value) {
    if (node.attribute.empty()) return assign_targets(node.targets, value, node.line);
    const Value target = lookup(node.targets[0]);
    if (target.kind() != Value::Kind::kNamespace) {
      return invalid_argument_error("cannot set '" + node.attribute + "' on '" + node.targets[0] +
                                    "': only a namespace() takes attribute assignments");
    }
    target.mutable_namespace().set(node.attribute, value);
    return ok_status();
  }

  Status exec_for(const Node& node, std::string* out) {
    MOESERVE_ASSIGN_OR_RETURN(const Value iterable, eval(*node.expr));
    MOESERVE_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(iterable));
    frames_.push_back(std::make_shared<Frame>());
    struct PopFrame {
      std::vector<std::shared_ptr<Frame>>* frames;
      ~PopFrame() { frames->pop_back(); }
    } pop{&frames_};
    if (node.condition != nullptr) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        MOESERVE_RETURN_IF_ERROR(assign_targets(node.targets, item, node.line));
        MOESERVE_ASSIGN_OR_RETURN(const Value keep, eval(*node.condition));
        if (keep.truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(node.else_body, out);
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      MOESERVE_RETURN_IF_ERROR(
          assign_targets(node.targets, items[static_cast<size_t>(i)], node.line));
      Dict loop;
      loop.set("index", Value::integer(i + 1));
      loop.set("index0", Value::integer(i));
      loop.set("revindex", Value::integer(length - i));
      loop.set("revindex0", Value::integer(length - i - 1));
      loop.set("first", Value::boolean(i == 0));
      loop.set("last", Value::boolean(i == length - 1));
      loop.set("length", Value::integer(length));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      if (i > 0) loop.set("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < length) loop.set("nextitem", items[static_cast<size_t>(i + 1)]);
      loop.set("cycle", Value::callable("loop.cycle", [i](const CallArgs& args) -> StatusOr<Value> {
                 if (args.positional.empty()) {
                   return invalid_argument_error("loop.cycle() needs at least one value");
                 }
                 return args.positional[static_cast<size_t>(i) % args.positional.size()];
               }));
      assign("loop", Value::dict(std::move(loop)));
      MOESERVE_RETURN_IF_ERROR(exec(node.body, out));
      if (flow_ == Flow::kBreak) {
        flow_ = Flow::kNormal;
        break;
      }
      flow_ = Flow::kNormal;
    }
    return ok_status();
  }

  Value make_macro(const Node& node) {
    const Node* macro = &node;
    return Value::callable(node.targets[0], [this, macro](const CallArgs& args) -> StatusOr<Value> {
      if (args.positional.size() > macro->params.size()) {
        return invalid_argument_error("macro '" + macro->targets[0] + "' takes " +
                                      std::to_string(macro->params.size()) + " arguments, got " +
                                      std::to_string(args.positional.size()));
      }
      if (depth_ >= kMaxDepth) return invalid_argument_error("macro calls nest too deeply");
      // The macro runs on the top-level scope plus its arguments.
      std::vector<std::shared_ptr<Frame>> saved = {frames_[0], std::make_shared<Frame>()};
      std::swap(saved, frames_);
      ++depth_;
      Status status;
      for (size_t i = 0; i < macro->params.size() && status.ok(); ++i) {
        const auto& [param, fallback] = macro->params[i];
        if (const Value* given = args.get(param, i); given != nullptr) {
          assign(param, *given);
        } else if (fallback != nullptr) {
          StatusOr<Value> v = eval(*fallback);
          if (v.ok()) assign(param, *v);
          status = v.status();
        } else {
          assign(param, Value());
        }
      }
      for (const auto& [key, value] : args.keyword) {
        bool known = false;
        for (const auto& param : macro->params) known = known || param.first == key;
        if (!known && status.ok()) {
          status = invalid_argument_error("macro '" + macro->targets[0] + "' has no parameter '" +
                                          key + "'");
        }
      }
      std::string out;
      if (status.ok()) status = exec(macro->body, &out);
      flow_ = Flow::kNormal;
      --depth_;
      std::swap(saved, frames_);
      if (!status.ok()) return status;
      return Value::string(std::move(out));
    });
  }

  StatusOr<CallArgs> eval_args(const Expr& e, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i) {
      MOESERVE_ASSIGN_OR_RETURN(Value v, eval(*e.children[i]));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [key, value] : e.keywords) {
      MOESERVE_ASSIGN_OR_RETURN(Value v, eval(*value));
      args.keyword.emplace_back(key, std::move(v));
    }
    return args;
  }

  StatusOr<Value> filter(const Expr& e, const Value& input) {
    MOESERVE_ASSIGN_OR_RETURN(const CallArgs args, eval_args(e, 1));
    return apply_filter(e.name, input, args);
  }

  StatusOr<Value> eval(const Expr& e) {
    if (depth_ >= kMaxDepth) return invalid_argument_error("expressions nest too deeply");
    ++depth_;
    StatusOr<Value> v = eval_inner(e);
    --depth_;
    if (!v.ok()) return at_line(v.status(), e.line);
    return v;
  }

  StatusOr<Value> eval_inner(const Expr& e) {
    switch (e.type) {
      case Expr::Type::kLiteral: return e.literal;
      case Expr::Type::kName: return lookup(e.name);
      case Expr::Type::kList: {
        std::vector<Value> items;
        for (const ExprPtr& child : e.children) {
          MOESERVE_ASSIGN_OR_RETURN(Value v, eval(*child));
          items.push_back(std::move(v));
        }
        return Value::list(std::move(items));
      }
      case Expr::Type::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          MOESERVE_ASSIGN_OR_RETURN(const Value key, eval(*e.children[i]));
          if (!key.is_string()) return invalid_argument_error("dict keys must be strings");
          MOESERVE_ASSIGN_OR_RETURN(Value value, eval(*e.children[i + 1]));
          d.set(key.as_string(), std::move(value));
        }
        return Value::dict(std::move(d));
      }
      case Expr::Type::kAttr: {
        MOESERVE_ASSIGN_OR_RETURN(const Value object, eval(*e.children[0]));
        return get_attribute(object, e.name);
      }
      case Expr::Type::kItem: {
        MOESERVE_ASSIGN_OR_RETURN(const Value object, eval(*e.children[0]));
        MOESERVE_ASSIGN_OR_RETURN(const Value key, eval(*e.children[1]));
        return get_item(object, key);
      }
      case Expr::Type::kSlice: {
        MOESERVE_ASSIGN_OR_RETURN(const Value object, eval(*e.children[0]));
        Value bounds[3];
        for (int i = 0; i < 3; ++i) {
          if (e.children[i + 1] != nullptr) {
            MOESERVE_ASSIGN_OR_RETURN(bounds[i], eval(*e.children[i + 1]));
          }
        }
        return get_slice(object, e.children[1] ? &bounds[0] : nullptr,
                         e.children[2] ? &bounds[1] : nullptr,
                         e.children[3] ? &bounds[2] : nullptr);
      }
      case Expr::Type::kCall: {
        MOESERVE_ASSIGN_OR_RETURN(const Value callee, eval(*e.children[0]));
        if (!callee.is_callable()) {
          const std::string what =
              e.children[0]->type == Expr::Type::kName   ? "'" + e.children[0]->name + "'"
              : e.children[0]->type == Expr::Type::kAttr ? "'" + e.children[0]->name + "'"
                                                         : "the value";
          return invalid_argument_error(
              what + " is " +
              (callee.is_undefined() ? std::string("undefined") : "a " + callee.type_name()) +
              ", not callable");
        }
        MOESERVE_ASSIGN_OR_RETURN(const CallArgs args, eval_args(e, 1));
        return callee.call(args);
      }
      case Expr::Type::kFilter: {
        MOESERVE_ASSIGN_OR_RETURN(const Value input, eval(*e.children[0]));
        return filter(e, input);
      }
      case Expr::Type::kTest: {
        MOESERVE_ASSIGN_OR_RETURN(const Value subject, eval(*e.children[0]));
        MOESERVE_ASSIGN_OR_RETURN(const CallArgs args, eval_args(e, 1));
        MOESERVE_ASSIGN_OR_RETURN(const bool result, apply_test(e.name, subject, args));
        return Value::boolean(result != e.negated);
      }
      case Expr::Type::kUnary: {
        MOESERVE_ASSIGN_OR_RETURN(const Value operand, eval(*e.children[0]));
        if (e.name == "not") return Value::boolean(!operand.truthy());
        if (operand.kind() == Value::Kind::kInt) {
          return Value::integer(e.name == "-" ? -operand.as_int() : operand.as_int());
        }
        if (operand.kind() == Value::Kind::kFloat) {
          return Value::number(e.name == "-" ? -operand.as_double() : operand.as_double());
        }
        return invalid_argument_error("bad operand type for unary " + e.name + ": '" +
                                      operand.type_name() + "'");
      }
      case Expr::Type::kBinary: {
        MOESERVE_ASSIGN_OR_RETURN(const Value left, eval(*e.children[0]));
        // and/or return an operand, as in Python, and short-circuit.
        if (e.name == "and") return left.truthy() ? eval(*e.children[1]) : left;
        if (e.name == "or") return left.truthy() ? left : eval(*e.children[1]);
        MOESERVE_ASSIGN_OR_RETURN(const Value right, eval(*e.children[1]));
        return binary_op(e.name, left, right);
      }
      case Expr::Type::kCondExpr: {
        MOESERVE_ASSIGN_OR_RETURN(const Value condition, eval(*e.children[1]));
        if (condition.truthy()) return eval(*e.children[0]);
        if (e.children[2] == nullptr) return Value();
        return eval(*e.children[2]);
      }
    }
    return internal_error("unknown expression");
  }

  std::vector<std::shared_ptr<Frame>> frames_;
  Flow flow_ = Flow::kNormal;
  int depth_ = 0;
};

}  // namespace

StatusOr<Template> Template::parse(std::string_view source) {
  auto tree = std::make_shared<Tree>();
  MOESERVE_ASSIGN_OR_RETURN(tree->body, jinja::parse(source));
  return Template(std::move(tree));
}

StatusOr<std::string> Template::render(const Dict& variables) const {
  Renderer renderer(variables);
  std::string out;
  MOESERVE_RETURN_IF_ERROR(renderer.exec(tree_->body, &out));
  return out;
}

}  // namespace moeserve::jinja
