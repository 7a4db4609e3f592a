#include "worker/structured/token_constraint.h"

namespace moeserve::structured {
namespace {

constexpr int32_t kUnknown = -2;
constexpr int32_t kDead = -1;

}  // namespace

size_t TokenConstraint::VectorHash::operator()(const std::vector<uint32_t>& v) const {
  uint64_t h = 0xcbf29ce484222325ull ^ v.size();
  for (uint32_t x : v) h = (h ^ x) * 0x100000001b3ull;
  return static_cast<size_t>(h ^ (h >> 29));
}

TokenConstraint::TokenConstraint(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary)
    : grammar_(std::move(grammar)), vocabulary_(std::move(vocabulary)) {
  walk_.resize(static_cast<size_t>(vocabulary_->max_depth()) + 1);
}

TokenConstraint::Stats TokenConstraint::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

int32_t TokenConstraint::intern(const GrammarState& state) {
  auto it = ids_.find(state.encoding());
  if (it != ids_.end()) return it->second;
  const int32_t id = static_cast<int32_t>(states_.size());
  states_.push_back(state);
  ids_.emplace(state.encoding(), id);
  next_.resize(next_.size() + 256, kUnknown);
  masks_.emplace_back();
  return id;
}

int32_t TokenConstraint::transition(int32_t state, uint8_t byte) {
  const size_t at = static_cast<size_t>(state) * 256 + byte;
  if (next_[at] != kUnknown) return next_[at];
  ++stats_.transitions_computed;
  GrammarState to = grammar_.advance(states_[state], byte);
  const int32_t id = to.dead() ? kDead : intern(to);
  next_[at] = id;
  return id;
}

void TokenConstraint::maybe_reset() {
  if (static_cast<int32_t>(states_.size()) < kMaxStates && num_masks_ < kMaxMasks) return;
  states_.clear();
  ids_.clear();
  next_.clear();
  masks_.clear();
  num_masks_ = 0;
  ++epoch_;
  ++stats_.resets;
}

void TokenConstraint::refresh(Handle& handle, const GrammarState& state) {
  if (handle.epoch == epoch_ && handle.id >= 0) return;
  handle.id = intern(state);
  handle.epoch = epoch_;
}

std::shared_ptr<const TokenMask> TokenConstraint::mask(Handle& handle, const GrammarState& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  maybe_reset();
  refresh(handle, state);
  if (masks_[handle.id] != nullptr) {
    ++stats_.mask_hits;
    return masks_[handle.id];
  }
  auto mask = std::make_shared<TokenMask>((static_cast<size_t>(vocabulary_->size()) + 63) / 64, 0);
  const std::vector<TokenVocabulary::Node>& nodes = vocabulary_->nodes();
  const std::vector<int32_t>& tokens = vocabulary_->token_ids();
  walk_[0] = handle.id;
  int64_t visited = 0;
  for (size_t i = 0; i < nodes.size();) {
    const TokenVocabulary::Node& node = nodes[i];
    ++visited;
    const int32_t to = transition(walk_[node.depth - 1], node.byte);
    if (to == kDead) {
      i = node.skip;
      continue;
    }
    walk_[node.depth] = to;
    for (uint32_t k = 0; k < node.token_count; ++k) {
      const int32_t t = tokens[node.first_token + k];
      (*mask)[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (t & 63);
    }
    ++i;
  }
  ++stats_.masks_computed;
  stats_.trie_nodes_visited += visited;
  masks_[handle.id] = mask;
  ++num_masks_;
  return mask;
}

bool TokenConstraint::advance(Handle& handle, GrammarState& state, const std::string& bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  maybe_reset();
  refresh(handle, state);
  int32_t id = handle.id;
  for (char c : bytes) {
    id = transition(id, static_cast<uint8_t>(c));
    if (id == kDead) return false;
  }
  handle.id = id;
  state = states_[id];
  return true;
}

TokenMatcher::TokenMatcher(std::shared_ptr<TokenConstraint> constraint)
    : constraint_(std::move(constraint)), state_(constraint_->grammar().initial()) {}

std::shared_ptr<const TokenMask> TokenMatcher::allowed() {
  return constraint_->mask(handle_, state_);
}

Status TokenMatcher::accept(int32_t token) {
  const TokenVocabulary& vocabulary = constraint_->vocabulary();
  if (token < 0 || token >= vocabulary.size() || vocabulary.bytes(token).empty()) {
    return invalid_argument_error("token " + std::to_string(token) +
                                  " has no bytes the grammar could match");
  }
  if (!constraint_->advance(handle_, state_, vocabulary.bytes(token))) {
    return invalid_argument_error("token " + std::to_string(token) +
                                  " does not continue the output the grammar allows");
  }
  return ok_status();
}

}  // namespace moeserve::structured
