// The reflector against the test API server: sync, watch, relist on 410, reconnect
// after dropped watches, and backoff through an injected sleep.
#include "operator/kube/reflector.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <thread>

#include "tests/operator/kube/kube_fixture.h"

namespace moeserve::kube {
namespace {

using moeserve::testing::wait_until;
using nlohmann::json;
using std::chrono::milliseconds;

// Handler calls recorded as "add x", "update x", "delete x".
class Recorder {
 public:
  ReflectorHandlers handlers() {
    return {[this](const json& o) { record("add", o); },
            [this](const json&, const json& o) { record("update", o); },
            [this](const json& o) { record("delete", o); }};
  }
  std::vector<std::string> calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  bool saw(const std::string& call) const {
    auto c = calls();
    return std::find(c.begin(), c.end(), call) != c.end();
  }

 private:
  void record(const char* what, const json& o) {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back(std::string(what) + " " + o["metadata"]["name"].get<std::string>());
  }
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

// A sleep that records the delays and blocks until the test opens the gate.
class GatedSleep {
 public:
  std::function<bool(int64_t)> fn() {
    return [this](int64_t delay_ms) {
      std::unique_lock<std::mutex> lock(mutex_);
      delays_.push_back(delay_ms);
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
      return true;
    };
  }
  void open() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  std::vector<int64_t> delays() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return delays_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<int64_t> delays_;
  bool open_ = false;
};

class ReflectorTest : public KubeTest {
 protected:
  void start(ReflectorOptions options = {}) {
    options.watch_read_timeout_ms = 2000;
    options.seed = 7;
    reflector_ = std::make_unique<Reflector>(*client_, resources::kConfigMaps, "default",
                                             recorder_.handlers(), options);
    thread_ = std::thread([this] { reflector_->run(); });
  }
  void TearDown() override {
    if (reflector_) reflector_->stop();
    if (thread_.joinable()) thread_.join();
  }
  bool cached(const std::string& name) { return reflector_->get("default/" + name).has_value(); }

  Recorder recorder_;
  std::unique_ptr<Reflector> reflector_;
  std::thread thread_;
};

TEST_F(ReflectorTest, ListsThenFollowsAddsUpdatesAndDeletes) {
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("before")).ok());
  start();
  ASSERT_TRUE(wait_until([&] { return reflector_->has_synced(); }, milliseconds(5000)));
  EXPECT_TRUE(cached("before"));

  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("later")).ok());
  ASSERT_TRUE(client_
                  ->patch(resources::kConfigMaps, "default", "before", PatchType::kMerge,
                          {{"data", {{"key", "changed"}}}})
                  .ok());
  ASSERT_TRUE(client_->remove(resources::kConfigMaps, "default", "later").ok());
  ASSERT_TRUE(wait_until([&] { return recorder_.calls().size() == 4; }, milliseconds(5000)));
  EXPECT_EQ(recorder_.calls(),
            (std::vector<std::string>{"add before", "add later", "update before", "delete later"}));
  EXPECT_EQ((*reflector_->get("default/before"))["data"]["key"], "changed");
  EXPECT_FALSE(cached("later"));
  EXPECT_EQ(reflector_->list_count(), 1);
}

TEST_F(ReflectorTest, DroppedWatchResumesFromTheLastResourceVersionWithoutRelisting) {
  start();
  ASSERT_TRUE(wait_until([&] { return reflector_->has_synced(); }, milliseconds(5000)));
  ASSERT_TRUE(wait_until([&] { return server_->open_watches() == 1; }, milliseconds(5000)));
  server_->drop_watches();
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("during")).ok());
  ASSERT_TRUE(wait_until([&] { return cached("during"); }, milliseconds(5000)));
  EXPECT_GE(reflector_->watch_count(), 2);
  EXPECT_EQ(reflector_->list_count(), 1);
  EXPECT_EQ(recorder_.calls(), (std::vector<std::string>{"add during"}));
}

TEST_F(ReflectorTest, ExpiredResourceVersionRelistsAndDiffsTheCache) {
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("stays")).ok());
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("vanishes")).ok());
  GatedSleep sleep;
  ReflectorOptions options;
  options.sleep = sleep.fn();
  start(options);
  ASSERT_TRUE(wait_until([&] { return server_->open_watches() == 1; }, milliseconds(5000)));

  // The watch drops and its reconnect fails, so the reflector sleeps in backoff while
  // the world changes and the history is compacted behind it.
  server_->fail_next(1, 500, "GET", "watch=true");
  server_->drop_watches();
  ASSERT_TRUE(wait_until([&] { return sleep.delays().size() == 1; }, milliseconds(5000)));
  ASSERT_TRUE(client_->remove(resources::kConfigMaps, "default", "vanishes").ok());
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("appears")).ok());
  server_->compact_history();
  sleep.open();

  ASSERT_TRUE(wait_until([&] { return reflector_->list_count() == 2 && cached("appears"); },
                         milliseconds(5000)));
  EXPECT_FALSE(cached("vanishes"));
  EXPECT_TRUE(cached("stays"));
  EXPECT_TRUE(recorder_.saw("delete vanishes"));
  EXPECT_TRUE(recorder_.saw("add appears"));
  EXPECT_EQ(reflector_->resource_version(), std::to_string(server_->resource_version()));
}

TEST_F(ReflectorTest, FailedListsBackOffExponentiallyWithJitterAndHonourRetryAfter) {
  server_->fail_next(3, 500, "GET", "/configmaps?");
  server_->fail_next(1, 429, "GET", "/configmaps?", 3);
  GatedSleep sleep;
  sleep.open();
  ReflectorOptions options;
  options.sleep = sleep.fn();
  options.backoff_initial_ms = 100;
  options.backoff_max_ms = 1000;
  options.jitter = 0.5;
  start(options);
  ASSERT_TRUE(wait_until([&] { return reflector_->has_synced(); }, milliseconds(5000)));
  std::vector<int64_t> delays = sleep.delays();
  ASSERT_EQ(delays.size(), 4u);
  EXPECT_GE(delays[0], 100);
  EXPECT_LE(delays[0], 150);
  EXPECT_GE(delays[1], 200);
  EXPECT_LE(delays[1], 300);
  EXPECT_GE(delays[2], 400);
  EXPECT_LE(delays[2], 600);
  EXPECT_EQ(delays[3], 3000);  // Retry-After beats the capped backoff
  EXPECT_EQ(reflector_->error_count(), 4);
}

TEST_F(ReflectorTest, StopEndsRunWhileWatching) {
  start();
  ASSERT_TRUE(wait_until([&] { return server_->open_watches() == 1; }, milliseconds(5000)));
  reflector_->stop();
  thread_.join();
  EXPECT_TRUE(reflector_->stopped());
}

}  // namespace
}  // namespace moeserve::kube
