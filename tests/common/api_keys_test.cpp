// ApiKeys: parsing a key file, and rotation as a Kubernetes Secret volume performs it
// (a new timestamped folder, then an atomic rename of the ..data symlink).
#include "common/api_keys.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/clock.h"

namespace moeserve::auth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A folder laid out like a mounted Secret: <dir>/api-keys -> ..data/api-keys,
// ..data -> ..<version>.
class SecretVolume {
 public:
  SecretVolume() {
    dir_ = fs::temp_directory_path() /
           ("api_keys_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~SecretVolume() { fs::remove_all(dir_); }

  // Publishes `content` as a new version of the Secret, atomically.
  void publish(const std::string& content) {
    const std::string version = "..v" + std::to_string(version_++);
    fs::create_directories(dir_ / version);
    std::ofstream(dir_ / version / "api-keys") << content;
    fs::create_directory_symlink(version, dir_ / "..data_tmp");
    fs::rename(dir_ / "..data_tmp", dir_ / "..data");
    if (!fs::is_symlink(dir_ / "api-keys")) {
      fs::create_symlink("..data/api-keys", dir_ / "api-keys");
    }
  }
  std::string path() const { return (dir_ / "api-keys").string(); }

 private:
  static inline int counter_ = 0;
  fs::path dir_;
  int version_ = 0;
};

TEST(ParseApiKeys, OneKeyPerLineTrimmedWithoutBlanksOrComments) {
  auto keys = parse_api_keys("  sk-one \n\n# retired: sk-old\nsk-two\r\n", "f");
  ASSERT_TRUE(keys.ok()) << keys.status().to_string();
  EXPECT_EQ(*keys, (std::vector<std::string>{"sk-one", "sk-two"}));
}

TEST(ParseApiKeys, AFileWithoutKeysIsRefusedNamingIt) {
  auto keys = parse_api_keys("\n# only a comment\n  \n", "/etc/moeserve/auth/api-keys");
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(keys.status().message().find("/etc/moeserve/auth/api-keys"), std::string::npos);
}

TEST(ApiKeys, LoadRefusesAMissingOrEmptyFile) {
  SecretVolume volume;
  EXPECT_EQ(ApiKeys::load(volume.path()).status().code(), StatusCode::kNotFound);
  volume.publish("\n");
  EXPECT_EQ(ApiKeys::load(volume.path()).status().code(), StatusCode::kInvalidArgument);
}

TEST(ApiKeys, AcceptsAnyListedKeyAndNothingElse) {
  SecretVolume volume;
  volume.publish("sk-a\nsk-b\n");
  auto keys = ApiKeys::load(volume.path());
  ASSERT_TRUE(keys.ok()) << keys.status().to_string();
  EXPECT_TRUE((*keys)->accepts("sk-a"));
  EXPECT_TRUE((*keys)->accepts("sk-b"));
  EXPECT_FALSE((*keys)->accepts("sk-"));
  EXPECT_FALSE((*keys)->accepts("sk-ab"));
  EXPECT_FALSE((*keys)->accepts(""));
}

TEST(ApiKeys, SecretRotationAcceptsTheNewKeyAndRefusesTheOld) {
  SecretVolume volume;
  volume.publish("sk-old\n");
  FakeClock clock;
  auto loaded = ApiKeys::load(volume.path(), &clock, 1000ms);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  ApiKeys& keys = **loaded;
  ASSERT_TRUE(keys.accepts("sk-old"));

  // Overlap while clients move over, then the old key is dropped.
  volume.publish("sk-old\nsk-new\n");
  EXPECT_FALSE(keys.accepts("sk-new")) << "rechecked at most once per interval";
  clock.advance(1000ms);
  EXPECT_TRUE(keys.accepts("sk-new"));
  EXPECT_TRUE(keys.accepts("sk-old"));

  volume.publish("sk-new\n");
  clock.advance(1000ms);
  EXPECT_TRUE(keys.accepts("sk-new"));
  EXPECT_FALSE(keys.accepts("sk-old"));
  EXPECT_EQ(keys.size(), 1u);
}

TEST(ApiKeys, ABadRotationKeepsThePreviousKeys) {
  SecretVolume volume;
  volume.publish("sk-1\n");
  FakeClock clock;
  auto loaded = ApiKeys::load(volume.path(), &clock, 1000ms);
  ASSERT_TRUE(loaded.ok());
  ApiKeys& keys = **loaded;

  volume.publish("   \n");  // emptied by mistake: the endpoint must not open up
  clock.advance(1000ms);
  EXPECT_TRUE(keys.accepts("sk-1"));
  EXPECT_FALSE(keys.accepts(""));

  fs::remove(volume.path());  // the key removed from the Secret
  clock.advance(1000ms);
  EXPECT_TRUE(keys.accepts("sk-1"));

  volume.publish("sk-2\n");
  clock.advance(1000ms);
  EXPECT_TRUE(keys.accepts("sk-2"));
  EXPECT_FALSE(keys.accepts("sk-1"));
}

}  // namespace
}  // namespace moeserve::auth

namespace moeserve::auth {
namespace {

TEST(BearerToken, MatchesTheSchemeCaseInsensitivelyAndNeedsAToken) {
  EXPECT_EQ(bearer_token("Bearer sk-1"), "sk-1");
  EXPECT_EQ(bearer_token("bEARER sk-1"), "sk-1");
  EXPECT_EQ(bearer_token("Bearer "), std::nullopt);
  EXPECT_EQ(bearer_token("Basic dXNlcg=="), std::nullopt);
  EXPECT_EQ(bearer_token(""), std::nullopt);
}

}  // namespace
}  // namespace moeserve::auth
