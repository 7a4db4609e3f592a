#include "operator/controller/leader_election.h"

#include <gtest/gtest.h>

namespace moeserve::controller {
namespace {

using namespace std::chrono_literals;

TEST(LeaseAvailable, FreeOwnAndExpiredLeases) {
  Clock::TimePoint seen{};
  auto now = seen + 5s;
  EXPECT_TRUE(lease_available(nlohmann::json::object(), "me", seen, now, 15000ms));
  EXPECT_TRUE(lease_available({{"holderIdentity", ""}}, "me", seen, now, 15000ms));
  EXPECT_TRUE(lease_available({{"holderIdentity", "me"}}, "me", seen, now, 15000ms));
  nlohmann::json held = {{"holderIdentity", "other"}, {"leaseDurationSeconds", 15}};
  EXPECT_FALSE(lease_available(held, "me", seen, seen + 14s, 15000ms));
  EXPECT_TRUE(lease_available(held, "me", seen, seen + 15s, 15000ms));
}

TEST(LeaseAvailable, ExpiryCountsFromWhenThisCandidateSawTheChange) {
  // The holder's renewTime may be far in the past by our clock (skew); only the local
  // observation time matters.
  nlohmann::json held = {{"holderIdentity", "other"},
                         {"renewTime", "2001-01-01T00:00:00.000000Z"},
                         {"leaseDurationSeconds", 15}};
  Clock::TimePoint seen = Clock::TimePoint{} + 100s;
  EXPECT_FALSE(lease_available(held, "me", seen, seen + 1s, 15000ms));
}

TEST(LeaseAvailable, MissingDurationUsesTheConfiguredOne) {
  nlohmann::json held = {{"holderIdentity", "other"}};
  Clock::TimePoint seen{};
  EXPECT_FALSE(lease_available(held, "me", seen, seen + 9s, 10000ms));
  EXPECT_TRUE(lease_available(held, "me", seen, seen + 10s, 10000ms));
}

TEST(MakeIdentity, HostnameAndRandomSuffix) {
  std::string a = make_identity();
  std::string b = make_identity();
  EXPECT_NE(a, b);
  ASSERT_NE(a.rfind('_'), std::string::npos);
  EXPECT_EQ(a.size() - a.rfind('_') - 1, 8u);
}

}  // namespace
}  // namespace moeserve::controller
