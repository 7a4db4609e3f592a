#include "common/hf_source.h"

#include <gtest/gtest.h>

#include <regex>

namespace moeserve {
namespace {

TEST(HfSource, DecodesRepositoryAndRevision) {
  const struct {
    std::string text;
    std::string repo, revision, effective;
    bool pinned;
  } cases[] = {
      {"hf://deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3", "", "main", false},
      {"hf://org/name@main", "org/name", "main", "main", false},
      {"hf://org/name@v1.0", "org/name", "v1.0", "v1.0", false},
      {"hf://org/name@refs/pr/3", "org/name", "refs/pr/3", "refs/pr/3", false},
      {"hf://o_1/n.2-x@0123456789abcdef0123456789abcdef01234567", "o_1/n.2-x",
       "0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567",
       true},
      // Upper-case hex is a valid branch name, not the commit form the Hub returns.
      {"hf://org/name@0123456789ABCDEF0123456789ABCDEF01234567", "org/name",
       "0123456789ABCDEF0123456789ABCDEF01234567", "0123456789ABCDEF0123456789ABCDEF01234567",
       false},
  };
  for (const auto& c : cases) {
    StatusOr<HfSource> s = parse_hf_source(c.text);
    ASSERT_TRUE(s.ok()) << c.text << ": " << s.status().message();
    EXPECT_EQ(s->repo, c.repo) << c.text;
    EXPECT_EQ(s->revision, c.revision) << c.text;
    EXPECT_EQ(s->effective_revision(), c.effective) << c.text;
    EXPECT_EQ(s->pinned(), c.pinned) << c.text;
    EXPECT_TRUE(std::regex_match(c.text, std::regex(kHfSourcePattern))) << c.text;
  }
}

TEST(HfSource, RefusesBadFormsSayingWhichPart) {
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"pvc://x", "must start with hf://"},
      {"hf://org", "repository must be org/name"},
      {"hf://org/", "repository must be org/name"},
      {"hf:///name", "repository must be org/name"},
      {"hf://org/name/extra", "repository must be org/name"},
      {"hf://org/na me", "repository must be org/name"},
      {"hf://../etc", "repository must not contain \"..\""},
      {"hf://org/name@", "revision after @ is empty"},
      {"hf://org/name@a@b", "revision must be a branch, tag or commit sha"},
      {"hf://org/name@/main", "revision must be a branch, tag or commit sha"},
      {"hf://org/name@main/", "revision must be a branch, tag or commit sha"},
      {"hf://org/name@a//b", "revision must be a branch, tag or commit sha"},
      {"hf://org/name@a b", "revision must be a branch, tag or commit sha"},
      {"hf://org/name@a..b", "revision must not contain \"..\""},
      {"hf://org/name@" + std::string(256, 'a'), "revision must be at most 255 characters"},
  };
  for (const auto& c : cases) {
    StatusOr<HfSource> s = parse_hf_source(c.text);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.error), std::string::npos)
        << c.text << ": " << s.status().message();
    EXPECT_NE(s.status().message().find("hf://org/name[@revision]"), std::string::npos);
    // The CRD's pattern refuses the same forms, except ".." and the length, which the CRD
    // checks with separate rules.
    if (c.text.find("..") == std::string::npos && c.text.size() < 200) {
      EXPECT_FALSE(std::regex_match(c.text, std::regex(kHfSourcePattern))) << c.text;
    }
  }
}

}  // namespace
}  // namespace moeserve
