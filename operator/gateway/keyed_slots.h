// KeyedSlots: at most `limit` holders per key at once, each holding a Slot that gives
// its place back when destroyed. The gateway uses one table for the wake queue (key:
// deployment, limit: spec.gateway.queueSize) and one for the per-API-key concurrency
// limit. `on_change(key, count)` runs after every change of a key's count, under the
// table's lock so reports arrive in order (the wake queue reports it to
// Discovery::report_waiting); it must not call back into the table. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace moeserve::gateway {

class KeyedSlots {
 public:
  using OnChange = std::function<void(const std::string& key, int64_t count)>;
  explicit KeyedSlots(OnChange on_change = {});
  KeyedSlots(const KeyedSlots&) = delete;
  KeyedSlots& operator=(const KeyedSlots&) = delete;

  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class KeyedSlots;
    Slot(KeyedSlots* table, std::string key) : table_(table), key_(std::move(key)) {}
    KeyedSlots* table_ = nullptr;
    std::string key_;
  };

  // A slot for `key` when fewer than `limit` are held (limit <= 0: never).
  std::optional<Slot> try_take(const std::string& key, int64_t limit);
  int64_t count(const std::string& key) const;

 private:
  void give_back(const std::string& key);

  OnChange on_change_;
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> counts_;
};

}  // namespace moeserve::gateway
