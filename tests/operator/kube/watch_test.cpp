#include "operator/kube/watch.h"

#include <gtest/gtest.h>

#include <random>

namespace moeserve::kube {
namespace {

std::string event_line(const std::string& type, const std::string& name, int rv) {
  return nlohmann::json{{"type", type},
                        {"object",
                         {{"kind", "ConfigMap"},
                          {"metadata", {{"name", name}, {"resourceVersion", std::to_string(rv)}}},
                          {"data", {{"text", "line with \\n escapes and {braces}"}}}}}}
             .dump() +
         "\n";
}

std::vector<std::string> names(const std::vector<WatchEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    std::string label(watch_event_type_name(e.type));
    label.append(":").append(e.object["metadata"].value("name", ""));
    out.push_back(label);
  }
  return out;
}

TEST(WatchDecoder, EventSplitAcrossReadsIsDeliveredOnceComplete) {
  std::string line = event_line("ADDED", "a", 1);
  WatchDecoder decoder;
  std::vector<WatchEvent> events;
  ASSERT_TRUE(decoder.feed(line.substr(0, 10), &events).ok());
  EXPECT_TRUE(events.empty());
  ASSERT_TRUE(decoder.feed(line.substr(10, line.size() - 11), &events).ok());
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(decoder.pending_bytes(), line.size() - 1);
  ASSERT_TRUE(decoder.feed("\n", &events).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, WatchEventType::kAdded);
  EXPECT_EQ(events[0].object["metadata"]["resourceVersion"], "1");
  EXPECT_EQ(decoder.pending_bytes(), 0u);
}

TEST(WatchDecoder, SeveralEventsInOneReadKeepTheirOrder) {
  std::string bytes = event_line("ADDED", "a", 1) + event_line("MODIFIED", "a", 2) +
                      event_line("DELETED", "a", 3) + event_line("BOOKMARK", "", 4);
  WatchDecoder decoder;
  std::vector<WatchEvent> events;
  ASSERT_TRUE(decoder.feed(bytes, &events).ok());
  EXPECT_EQ(names(events),
            (std::vector<std::string>{"ADDED:a", "MODIFIED:a", "DELETED:a", "BOOKMARK:"}));
}

TEST(WatchDecoder, RandomChunkingYieldsTheSameEventsAsOneRead) {
  std::string bytes;
  for (int i = 0; i < 50; ++i) {
    std::string name = "o";
    name += std::to_string(i);
    bytes += event_line(i % 2 ? "MODIFIED" : "ADDED", name, i);
  }
  WatchDecoder whole;
  std::vector<WatchEvent> expected;
  ASSERT_TRUE(whole.feed(bytes, &expected).ok());
  ASSERT_EQ(expected.size(), 50u);

  std::mt19937 rng(42);
  for (int trial = 0; trial < 20; ++trial) {
    WatchDecoder decoder;
    std::vector<WatchEvent> got;
    size_t at = 0;
    while (at < bytes.size()) {
      size_t n = std::uniform_int_distribution<size_t>(1, 300)(rng);
      ASSERT_TRUE(decoder.feed(std::string_view(bytes).substr(at, n), &got).ok());
      at += n;
    }
    EXPECT_EQ(names(got), names(expected));
  }
}

TEST(WatchDecoder, MalformedLinesAreErrorsAfterEarlierEvents) {
  WatchDecoder decoder;
  std::vector<WatchEvent> events;
  Status status = decoder.feed(event_line("ADDED", "a", 1) + "{not json}\n", &events);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(events.size(), 1u);
  EXPECT_FALSE(parse_watch_event(R"({"type":"SURPRISE","object":{}})").ok());
  EXPECT_FALSE(parse_watch_event(R"({"type":"ADDED"})").ok());
  auto error = parse_watch_event(R"({"type":"ERROR","object":{"kind":"Status","code":410}})");
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error->type, WatchEventType::kError);
}

}  // namespace
}  // namespace moeserve::kube
