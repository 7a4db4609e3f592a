// moeserve-fetch as the init container runs it: flags, environment, exit codes.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/support/test_util.h"
#include "tests/tools/fetch/fake_hub.h"

namespace moeserve::fetch {
namespace {

using moeserve::testing::bin_dir;
using moeserve::testing::read_file;
using moeserve::testing::run_command;
using moeserve::testing::TempDir;
using moeserve::testing::write_file;

// Absolute: the commands run in a temporary directory.
std::string fetch_binary() {
  return std::filesystem::absolute(bin_dir() + "/moeserve-fetch").string();
}

int fetch_cli(const std::string& args, const TempDir& dir) {
  return run_command("cd " + dir.path() + " && env -u HF_ENDPOINT -u HF_TOKEN -u HF_HUB_OFFLINE " +
                     fetch_binary() + " " + args + " 2>" + dir.file("stderr"));
}

TEST(FetchCli, FetchesWithTheEndpointAndTokenFromTheEnvironment) {
  testing::FakeHub hub;
  hub.set_token("tok");
  hub.set_commit("v1", std::string(40, 'a'), {{"config.json", "{}"}});
  TempDir dir;
  EXPECT_EQ(fetch_cli("hf://org/model@v1 --dest out --endpoint " + hub.endpoint(), dir), 1);
  EXPECT_NE(read_file(dir.file("stderr")).find("HTTP 401"), std::string::npos);
  EXPECT_EQ(run_command("cd " + dir.path() + " && HF_ENDPOINT=" + hub.endpoint() +
                        "/ HF_TOKEN=tok " + fetch_binary() + " hf://org/model@v1 " + "--dest out"),
            0);
  EXPECT_EQ(read_file(dir.file("out/config.json")), "{}");
  write_file(dir.file("token"), "tok\n");
  EXPECT_EQ(
      fetch_cli("hf://org/model@v1 --dest out2 --token-file token --endpoint " + hub.endpoint(),
                dir),
      0);
  EXPECT_EQ(fetch_cli("hf://org/model@v1 --dest out2 --offline", dir), 0);
}

TEST(FetchCli, BadFlagsExitTwoWithTheReason) {
  TempDir dir;
  const struct {
    std::string args;
    std::string error;
  } cases[] = {
      {"--dest out", "expects exactly one source"},
      {"hf://org/model@ --dest out", "source: revision after @ is empty"},
      {"hf://org --dest out", "source: repository must be org/name"},
      {"hf://org/model", "--dest is required"},
      {"hf://org/model --dest out --endpoint ftp://x", "--endpoint"},
      {"hf://org/model --dest out --endpoint http://h/path", "without a path"},
      {"hf://org/model --dest out --token-file missing", "--token-file"},
      {"hf://org/model --dest out --include ,", "--include"},
      {"hf://org/model --dest out --retries -1", "--retries"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(fetch_cli(c.args, dir), 2) << c.args;
    EXPECT_NE(read_file(dir.file("stderr")).find(c.error), std::string::npos)
        << c.args << ": " << read_file(dir.file("stderr"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("out")));
}

}  // namespace
}  // namespace moeserve::fetch
