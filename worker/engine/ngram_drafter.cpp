#include "worker/engine/ngram_drafter.h"

#include <algorithm>

namespace moeserve::engine {

std::vector<int32_t> ngram_lookup(std::span<const int32_t> tokens, int32_t min_ngram,
                                  int32_t max_ngram, int32_t max_draft) {
  const int64_t size = static_cast<int64_t>(tokens.size());
  if (max_draft <= 0) return {};
  for (int64_t n = std::min<int64_t>(max_ngram, size - 1); n >= min_ngram; --n) {
    std::span<const int32_t> suffix = tokens.subspan(size - n);
    // The most recent earlier occurrence: starts before the suffix itself.
    for (int64_t start = size - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      const int64_t from = start + n;
      const int64_t count = std::min<int64_t>(max_draft, size - from);
      return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + from + count);
    }
  }
  return {};
}

Status NgramDrafter::step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) {
  drafts->assign(inputs.size(), Draft{});
  for (size_t i = 0; i < inputs.size(); ++i) {
    (*drafts)[i].tokens = ngram_lookup(inputs[i].tokens, kMinNgram, kMaxNgram, inputs[i].max_draft);
  }
  return ok_status();
}

}  // namespace moeserve::engine
