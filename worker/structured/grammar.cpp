#include "worker/structured/grammar.h"

#include <algorithm>
#include <functional>

namespace moeserve::structured {

ByteSet ByteSet::of(uint8_t byte) { return ByteSet{}.add(byte); }

ByteSet ByteSet::range(uint8_t lo, uint8_t hi) { return ByteSet{}.add_range(lo, hi); }

ByteSet& ByteSet::add(uint8_t byte) {
  words[byte >> 6] |= uint64_t{1} << (byte & 63);
  return *this;
}

ByteSet& ByteSet::add_range(uint8_t lo, uint8_t hi) {
  for (int b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
  return *this;
}

ByteSet& ByteSet::remove(uint8_t byte) {
  words[byte >> 6] &= ~(uint64_t{1} << (byte & 63));
  return *this;
}

Sequence concat(std::initializer_list<Sequence> parts) {
  Sequence out;
  for (const Sequence& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// ---------------------------------------------------------------- matching

struct Grammar::StackSet {
  std::vector<std::vector<uint32_t>> stacks;
};

void Grammar::expand(std::vector<uint32_t>& stack, StackSet& out) const {
  while (!stack.empty()) {
    const uint32_t pos = stack.back();
    const Element& e = elements_[pos];
    if (e.kind == Element::Kind::kBytes) break;
    stack.pop_back();
    if (e.kind == Element::Kind::kEnd) continue;  // the sequence finished: continue below
    // A reference: continue after it once the rule matched (nothing to remember when it
    // ends its sequence), starting with each of the rule's alternatives.
    if (elements_[pos + 1].kind != Element::Kind::kEnd) stack.push_back(pos + 1);
    const std::vector<uint32_t>& alternatives = rules_[e.index];
    if (alternatives.empty()) return;
    for (size_t a = 0; a + 1 < alternatives.size(); ++a) {
      std::vector<uint32_t> copy = stack;
      copy.push_back(alternatives[a]);
      expand(copy, out);
    }
    stack.push_back(alternatives.back());
  }
  out.stacks.push_back(stack);
}

GrammarState Grammar::canonical(StackSet& set) const {
  std::sort(set.stacks.begin(), set.stacks.end());
  set.stacks.erase(std::unique(set.stacks.begin(), set.stacks.end()), set.stacks.end());
  GrammarState state;
  for (const std::vector<uint32_t>& s : set.stacks) {
    state.flat_.push_back(static_cast<uint32_t>(s.size()));
    state.flat_.insert(state.flat_.end(), s.begin(), s.end());
    if (s.empty()) state.accepting_ = true;
  }
  state.stacks_ = static_cast<uint32_t>(set.stacks.size());
  return state;
}

GrammarState Grammar::initial() const {
  StackSet set;
  std::vector<uint32_t> stack = {0};  // elements_[0] is the reference to the root
  expand(stack, set);
  return canonical(set);
}

GrammarState Grammar::advance(const GrammarState& from, uint8_t byte) const {
  StackSet set;
  const std::vector<uint32_t>& flat = from.flat_;
  for (size_t i = 0; i < flat.size(); i += 1 + flat[i]) {
    const uint32_t length = flat[i];
    if (length == 0) continue;  // a finished parse consumes nothing more
    const uint32_t top = flat[i + length];
    if (!sets_[elements_[top].index].contains(byte)) continue;
    std::vector<uint32_t> stack(flat.begin() + static_cast<int64_t>(i) + 1,
                                flat.begin() + static_cast<int64_t>(i) + 1 + length);
    stack.back() = top + 1;
    expand(stack, set);
  }
  return canonical(set);
}

GrammarState Grammar::advance(const GrammarState& from, std::string_view bytes) const {
  GrammarState state = from;
  for (char c : bytes) {
    if (state.dead()) break;
    state = advance(state, static_cast<uint8_t>(c));
  }
  return state;
}

bool Grammar::matches(std::string_view bytes) const {
  return advance(initial(), bytes).accepting();
}

bool Grammar::is_prefix(std::string_view bytes) const { return !advance(initial(), bytes).dead(); }

// ---------------------------------------------------------------- building

uint32_t GrammarBuilder::declare() {
  rules_.emplace_back();
  defined_.push_back(false);
  return static_cast<uint32_t>(rules_.size() - 1);
}

void GrammarBuilder::define(uint32_t rule, std::vector<Sequence> alternatives) {
  rules_[rule] = std::move(alternatives);
  defined_[rule] = true;
}

uint32_t GrammarBuilder::add_rule(std::vector<Sequence> alternatives) {
  const uint32_t rule = declare();
  define(rule, std::move(alternatives));
  return rule;
}

Element GrammarBuilder::bytes(const ByteSet& set) {
  for (size_t i = 0; i < sets_.size(); ++i) {
    if (std::equal(std::begin(sets_[i].words), std::end(sets_[i].words), std::begin(set.words))) {
      return {Element::Kind::kBytes, static_cast<uint32_t>(i)};
    }
  }
  sets_.push_back(set);
  return {Element::Kind::kBytes, static_cast<uint32_t>(sets_.size() - 1)};
}

Sequence GrammarBuilder::literal(std::string_view text) {
  Sequence out;
  for (char c : text) out.push_back(bytes(ByteSet::of(static_cast<uint8_t>(c))));
  return out;
}

StatusOr<Grammar> GrammarBuilder::build(uint32_t root) && {
  const size_t n = rules_.size();
  if (root >= n) return invalid_argument_error("grammar: the root rule does not exist");
  for (size_t r = 0; r < n; ++r) {
    if (!defined_[r]) {
      return invalid_argument_error("grammar: rule " + std::to_string(r) + " is never defined");
    }
    for (const Sequence& alt : rules_[r]) {
      for (const Element& e : alt) {
        if (e.kind == Element::Kind::kRule && e.index >= n) {
          return invalid_argument_error("grammar: rule " + std::to_string(r) +
                                        " refers to a rule that does not exist");
        }
        if (e.kind == Element::Kind::kEnd) {
          return invalid_argument_error("grammar: sequences hold byte sets and references only");
        }
      }
    }
  }
  // Nullable rules (match the empty string), to a fixpoint.
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Sequence& alt : rules_[r]) {
        if (std::all_of(alt.begin(), alt.end(), [&](const Element& e) {
              return e.kind == Element::Kind::kRule && nullable[e.index];
            })) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  // Left corners: r -> s when s can be expanded before r consumes a byte. A cycle would
  // make expansion endless.
  std::vector<std::vector<uint32_t>> corners(n);
  for (size_t r = 0; r < n; ++r) {
    for (const Sequence& alt : rules_[r]) {
      for (const Element& e : alt) {
        if (e.kind != Element::Kind::kRule) break;
        corners[r].push_back(e.index);
        if (!nullable[e.index]) break;
      }
    }
  }
  std::vector<uint8_t> mark(n, 0);  // 0 unvisited, 1 on the path, 2 done
  std::function<bool(uint32_t)> cyclic = [&](uint32_t r) {
    if (mark[r] == 1) return true;
    if (mark[r] == 2) return false;
    mark[r] = 1;
    for (uint32_t s : corners[r]) {
      if (cyclic(s)) return true;
    }
    mark[r] = 2;
    return false;
  };
  for (uint32_t r = 0; r < n; ++r) {
    if (cyclic(r)) {
      return invalid_argument_error("grammar: rule " + std::to_string(r) + " is left-recursive");
    }
  }

  Grammar g;
  g.sets_ = std::move(sets_);
  g.root_ = root;
  g.elements_.push_back(ref(root));  // position 0: the start
  g.elements_.push_back({});
  g.rules_.resize(n);
  for (size_t r = 0; r < n; ++r) {
    for (const Sequence& alt : rules_[r]) {
      g.rules_[r].push_back(static_cast<uint32_t>(g.elements_.size()));
      g.elements_.insert(g.elements_.end(), alt.begin(), alt.end());
      g.elements_.push_back({});
    }
  }
  return g;
}

}  // namespace moeserve::structured
