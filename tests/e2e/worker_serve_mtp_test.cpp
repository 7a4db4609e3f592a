// End to end: `moeserve-worker serve --speculative mtp` as a child process on a tiny model
// whose MTP module agrees with the main model (fixtures' mtp_agreement 1): greedy
// completions, streamed and not, equal those of a worker without speculation, and a
// checkpoint without an MTP module is refused at start with the reason.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve {
namespace {

using namespace std::chrono_literals;
using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using nlohmann::json;

std::string worker_binary() { return moeserve::testing::bin_dir() + "/moeserve-worker"; }

struct Worker {
  std::unique_ptr<Process> process;
  uint16_t port = 0;
  std::string log;
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

Worker start_worker(const TempDir& dir, const std::string& model_dir, const std::string& name,
                    const std::vector<std::string>& extra) {
  Worker w;
  w.port = free_port();
  w.log = dir.file(name + ".log");
  std::vector<std::string> argv = {worker_binary(), "serve",  "--model",
                                   model_dir,       "--port", std::to_string(w.port),
                                   "--threads",     "1",      "--served-model-name",
                                   "tiny"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  w.process = std::make_unique<Process>(argv, w.log);
  http::Client client;
  const bool up = wait_until(
      [&] {
        auto r = client.send({"GET", w.url("/readyz"), {}, ""});
        return r.ok() && r->status == 200;
      },
      30s);
  EXPECT_TRUE(up) << moeserve::testing::read_file(w.log);
  return w;
}

// Generated token text of a greedy completion over token ids, streamed or not.
std::string complete(const Worker& w, const std::vector<int32_t>& prompt, bool stream) {
  const json body = {{"model", "tiny"},  {"prompt", prompt}, {"max_tokens", 20},
                     {"temperature", 0}, {"stream", stream}, {"ignore_eos", true}};
  http::Client client;
  auto r = client.send({"POST",
                        w.url("/v1/completions"),
                        {{"Content-Type", "application/json"}},
                        body.dump(),
                        60000});
  EXPECT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().to_string());
  if (!r.ok()) return "";
  if (!stream) return json::parse(r->body)["choices"][0]["text"].get<std::string>();
  std::string text;
  size_t pos = 0;
  for (size_t end; (end = r->body.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    const std::string payload = r->body.substr(pos + 6, end - pos - 6);
    if (payload == "[DONE]") break;
    const json chunk = json::parse(payload);
    for (const json& choice : chunk["choices"]) {
      text += choice["text"].get<std::string>();
    }
  }
  return text;
}

TEST(WorkerServeMtp, GreedyOutputWithMtpDraftsEqualsPlainDecoding) {
  TempDir dir;
  const std::string model_dir = dir.file("agreeing");
  ASSERT_TRUE(fixtures::write_tiny_model(model_dir, {.seed = 2, .mtp_agreement = 1.0}).ok());
  Worker plain = start_worker(dir, model_dir, "plain", {});
  Worker mtp =
      start_worker(dir, model_dir, "mtp", {"--speculative", "mtp", "--num-draft-tokens", "2"});
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> prompt;
    for (int t = 0; t < 5 + 7 * i; ++t) prompt.push_back((t * 31 + 17 * i + 3) % 512);
    const std::string want = complete(plain, prompt, false);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(complete(mtp, prompt, false), want) << "prompt " << i;
    EXPECT_EQ(complete(mtp, prompt, true), want) << "prompt " << i << " streamed";
  }
}

TEST(WorkerServeMtp, ACheckpointWithoutMtpIsRefusedAtStart) {
  TempDir dir;
  const std::string model_dir = dir.file("v2");
  ASSERT_TRUE(
      fixtures::write_tiny_model(model_dir, {.architecture = model::Architecture::kDeepseekV2})
          .ok());
  const std::string log = dir.file("refused.log");
  const int rc = moeserve::testing::run_command(worker_binary() + " serve --model " + model_dir +
                                                " --port " + std::to_string(free_port()) +
                                                " --speculative mtp > " + log + " 2>&1");
  EXPECT_NE(rc, 0);
  EXPECT_NE(moeserve::testing::read_file(log).find("num_nextn_predict_layers is 0"),
            std::string::npos)
      << moeserve::testing::read_file(log);
}

}  // namespace
}  // namespace moeserve
