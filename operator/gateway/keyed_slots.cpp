#include "operator/gateway/keyed_slots.h"

#include <utility>

namespace moeserve::gateway {

KeyedSlots::KeyedSlots(OnChange on_change) : on_change_(std::move(on_change)) {}

KeyedSlots::Slot::Slot(Slot&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)), key_(std::move(other.key_)) {}

KeyedSlots::Slot& KeyedSlots::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (table_) table_->give_back(key_);
    table_ = std::exchange(other.table_, nullptr);
    key_ = std::move(other.key_);
  }
  return *this;
}

KeyedSlots::Slot::~Slot() {
  if (table_) table_->give_back(key_);
}

std::optional<KeyedSlots::Slot> KeyedSlots::try_take(const std::string& key, int64_t limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t& n = counts_[key];
  if (n >= limit) {
    if (n == 0) counts_.erase(key);
    return std::nullopt;
  }
  ++n;
  if (on_change_) on_change_(key, n);
  return Slot(this, key);
}

int64_t KeyedSlots::count(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

void KeyedSlots::give_back(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(key);
  if (it == counts_.end()) return;
  const int64_t now = --it->second;
  if (now == 0) counts_.erase(it);
  if (on_change_) on_change_(key, now);
}

}  // namespace moeserve::gateway
