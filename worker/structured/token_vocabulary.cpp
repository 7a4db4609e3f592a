#include "worker/structured/token_vocabulary.h"

#include <algorithm>
#include <limits>

namespace moeserve::structured {

TokenVocabulary::TokenVocabulary(std::vector<std::string> token_bytes,
                                 const std::vector<bool>& excluded)
    : bytes_(std::move(token_bytes)) {
  // Tokens longer than a node's depth can count are left out (none in real vocabularies).
  constexpr size_t kMaxBytes = std::numeric_limits<uint16_t>::max();
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < size(); ++id) {
    const bool out = static_cast<size_t>(id) < excluded.size() && excluded[id];
    if (!out && !bytes_[id].empty() && bytes_[id].size() <= kMaxBytes) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return bytes_[a] < bytes_[b] || (bytes_[a] == bytes_[b] && a < b);
  });
  // Sorted strings list a node's tokens before its children, and its children in order:
  // each string pops the path back to what it shares with the previous one and pushes
  // the rest. A node's subtree ends when it is popped.
  std::vector<uint32_t> path;  // node index at each depth - 1
  const std::string* previous = nullptr;
  for (int32_t id : ids) {
    const std::string& s = bytes_[id];
    size_t common = 0;
    if (previous != nullptr) {
      while (common < s.size() && common < previous->size() && s[common] == (*previous)[common]) {
        ++common;
      }
    }
    while (path.size() > common) {
      nodes_[path.back()].skip = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      Node node;
      node.byte = static_cast<uint8_t>(s[d]);
      node.depth = static_cast<uint16_t>(d + 1);
      node.first_token = static_cast<uint32_t>(token_ids_.size());
      path.push_back(static_cast<uint32_t>(nodes_.size()));
      nodes_.push_back(node);
    }
    ++nodes_[path.back()].token_count;
    token_ids_.push_back(id);
    max_depth_ = std::max(max_depth_, static_cast<int32_t>(s.size()));
    previous = &s;
  }
  for (uint32_t index : path) nodes_[index].skip = static_cast<uint32_t>(nodes_.size());
}

}  // namespace moeserve::structured
