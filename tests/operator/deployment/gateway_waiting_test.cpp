#include "operator/deployment/gateway_waiting.h"

#include <gtest/gtest.h>

#include <cctype>

#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::chrono::sys_seconds at(const char* text) { return *parse_rfc3339(text); }

TEST(GatewayWaitingKey, IsThePrefixAndThePodName) {
  EXPECT_EQ(gateway_waiting_key("moeserve-gateway-7d9f-abcde"),
            "waiting.gateway.moeserve.io/moeserve-gateway-7d9f-abcde");
}

TEST(GatewayWaitingKey, LongOrOddNamesAreCutAndHashedApart) {
  const std::string long_a(80, 'a');
  const std::string long_b = std::string(79, 'a') + "b";
  const std::string a = gateway_waiting_key(long_a);
  const std::string b = gateway_waiting_key(long_b);
  EXPECT_NE(a, b);
  for (const std::string& key : {a, b, gateway_waiting_key("gw/1"), gateway_waiting_key("-x-")}) {
    const std::string name = key.substr(kGatewayWaitingPrefix.size());
    EXPECT_LE(name.size(), 63u) << key;
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(name.front()))) << key;
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(name.back()))) << key;
    EXPECT_EQ(name.find('/'), std::string::npos) << key;
  }
  EXPECT_NE(gateway_waiting_key("gw/1"), gateway_waiting_key("gw-1"));
}

TEST(GatewayWaitingValue, RoundTrips) {
  const std::string text = format_gateway_waiting(3, at("2026-01-01T00:00:05Z"));
  EXPECT_EQ(text, "3 2026-01-01T00:00:05Z");
  auto parsed = parse_gateway_waiting(text);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->requests, 3);
  EXPECT_EQ(parsed->written, at("2026-01-01T00:00:05Z"));
}

TEST(GatewayWaitingValue, RefusesMalformedValues) {
  for (const char* bad : {"", "3", "x 2026-01-01T00:00:05Z", "-1 2026-01-01T00:00:05Z",
                          "3 yesterday", " 3 2026-01-01T00:00:05Z", "3x 2026-01-01T00:00:05Z"}) {
    EXPECT_FALSE(parse_gateway_waiting(bad)) << bad;
  }
}

TEST(FreshGatewayWaiting, SumsFreshEntriesOfEveryGateway) {
  const json annotations = {
      {"waiting.gateway.moeserve.io/gw-a", "3 2026-01-01T00:00:50Z"},
      {"waiting.gateway.moeserve.io/gw-b", "2 2026-01-01T00:00:10Z"},
      {"waiting.gateway.moeserve.io/gw-old", "7 2026-01-01T00:00:00Z"},  // 61 s old
      {"waiting.gateway.moeserve.io/gw-bad", "many"},
      {"other.example.com/x", "5 2026-01-01T00:00:50Z"},
  };
  auto total = fresh_gateway_waiting(annotations, at("2026-01-01T00:01:01Z"), 60s);
  ASSERT_TRUE(total);
  EXPECT_EQ(*total, 5);
}

TEST(FreshGatewayWaiting, NoFreshEntryIsNoReport) {
  EXPECT_FALSE(fresh_gateway_waiting(json(), at("2026-01-01T00:00:00Z"), 60s));
  EXPECT_FALSE(fresh_gateway_waiting({{"waiting.gateway.moeserve.io/gw", "1 2025-12-31T00:00:00Z"}},
                                     at("2026-01-01T00:00:00Z"), 60s));
  auto zero = fresh_gateway_waiting({{"waiting.gateway.moeserve.io/gw", "0 2026-01-01T00:00:00Z"}},
                                    at("2026-01-01T00:00:00Z"), 60s);
  ASSERT_TRUE(zero);
  EXPECT_EQ(*zero, 0);
}

}  // namespace
}  // namespace moeserve::deployment
