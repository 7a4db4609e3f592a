// inspect_request and the static config: what the gateway reads from bodies and files.
#include "operator/gateway/openai_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "operator/gateway/keyed_slots.h"
#include "operator/gateway/static_discovery.h"

namespace moeserve::gateway {
namespace {

using nlohmann::json;

TEST(InspectRequest, ChatReadsModelStreamCostAndACanonicalPrefix) {
  const json body = {
      {"model", "tiny"},
      {"stream", true},
      {"n", 2},
      {"max_completion_tokens", 10},
      {"max_tokens", 99},
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "Hi "}}, {{"type", "text"}, {"text", "there"}}}}}}}};
  auto r = inspect_request("/v1/chat/completions", body.dump(), {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->model, "tiny");
  EXPECT_TRUE(r->stream);
  EXPECT_EQ(r->max_tokens, 10) << "max_completion_tokens wins, as on the worker";
  EXPECT_EQ(r->choices, 2);
  EXPECT_EQ(r->prefix_text, "system\nBe brief.\n\nuser\nHi there\n\n");
  EXPECT_GT(r->prompt_tokens_estimate, 0);
  EXPECT_EQ(r->cost_tokens(), r->prompt_tokens_estimate + 20);
}

TEST(InspectRequest, TheSameConversationStartGivesTheSamePrefixWhateverFollows) {
  auto with = [](const std::string& question) {
    json body = {
        {"model", "m"},
        {"messages",
         {{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", question}}}}};
    return inspect_request("/v1/chat/completions", body.dump(), {})->prefix_text;
  };
  EXPECT_TRUE(with("second").starts_with("system\nS\n\nuser\n"));
  EXPECT_EQ(with("a").substr(0, 10), with("b").substr(0, 10));
}

TEST(InspectRequest, CompletionsReadTextTokenIdsAndBatches) {
  auto text = inspect_request("/v1/completions", R"({"model":"m","prompt":"abcdefgh"})",
                              {.assumed_max_tokens = 7});
  EXPECT_EQ(text->prefix_text, "abcdefgh");
  EXPECT_EQ(text->prompt_tokens_estimate, 2);
  EXPECT_EQ(text->max_tokens, 7) << "no max_tokens: the assumed value";
  auto ids =
      inspect_request("/v1/completions", R"({"model":"m","prompt":[1,2,3],"max_tokens":5})", {});
  EXPECT_EQ(ids->prefix_text, "1,2,3,");
  EXPECT_EQ(ids->prompt_tokens_estimate, 3);
  auto batch = inspect_request("/v1/completions",
                               R"({"model":"m","prompt":["abcd","efgh"],"max_tokens":5})", {});
  EXPECT_EQ(batch->prefix_text, "abcd");
  EXPECT_EQ(batch->cost_tokens(), 2 + 2 * 5);
}

TEST(InspectRequest, RefusesBodiesWithoutAModel) {
  EXPECT_EQ(inspect_request("/v1/completions", "not json", {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(inspect_request("/v1/completions", "[1]", {}).status().code(),
            StatusCode::kInvalidArgument);
  auto missing = inspect_request("/v1/completions", R"({"prompt":"x"})", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().message().starts_with("model"));
  EXPECT_FALSE(inspect_request("/tokenize", R"({"model":3})", {}).ok());
}

TEST(OpenAiError, HasOpenAisShapeAndRetryAfter) {
  http::Response r = openai_error(503, "waking", "service_unavailable", "no_ready_group", 5);
  EXPECT_EQ(r.status, 503);
  const json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["message"], "waking");
  EXPECT_EQ(e["code"], "no_ready_group");
  EXPECT_TRUE(e["param"].is_null());
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Retry-After", "5"}));
}

TEST(KeyedSlots, HoldsAtMostTheLimitPerKeyAndReportsEachChange) {
  std::vector<std::pair<std::string, int64_t>> changes;
  KeyedSlots slots([&](const std::string& k, int64_t n) { changes.emplace_back(k, n); });
  {
    auto a1 = slots.try_take("a", 2);
    auto a2 = slots.try_take("a", 2);
    ASSERT_TRUE(a1 && a2);
    EXPECT_FALSE(slots.try_take("a", 2));
    EXPECT_TRUE(slots.try_take("b", 2)) << "keys are independent";
    EXPECT_EQ(slots.count("a"), 2);
    EXPECT_FALSE(slots.try_take("c", 0)) << "a zero limit holds nothing";
  }
  EXPECT_EQ(slots.count("a"), 0);
  const std::vector<std::pair<std::string, int64_t>> expected = {{"a", 1}, {"a", 2}, {"b", 1},
                                                                 {"b", 0}, {"a", 1}, {"a", 0}};
  EXPECT_EQ(changes, expected);
}

TEST(StaticConfig, ParsesModelsAndUpstreams) {
  const json doc = {
      {"models",
       {{{"model", "tiny"},
         {"upstreams", {"http://127.0.0.1:8101/", "http://127.0.0.1:8111"}},
         {"queueSize", 3}},
        {{"model", "big"}, {"deployment", "prod/big"}, {"upstreams", {"http://10.0.0.7:8000"}}}}}};
  auto s = parse_static_config(doc, "f.yaml");
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->models.size(), 2u);
  const ServedModel& tiny = s->models[0];
  EXPECT_EQ(tiny.deployment, "static/tiny");
  EXPECT_EQ(tiny.queue_size, 3);
  EXPECT_FALSE(tiny.can_wake);
  ASSERT_EQ(tiny.groups.size(), 2u);
  EXPECT_EQ(tiny.groups[0].id, "static/tiny/g0");
  EXPECT_EQ(tiny.groups[0].base_url, "http://127.0.0.1:8101") << "trailing slash trimmed";
  EXPECT_FALSE(tiny.groups[0].ready) << "ready only once /readyz answers";
  EXPECT_EQ(s->models[1].groups[0].id, "prod/big/g0");
}

TEST(StaticConfig, RefusesBadInputNamingTheField) {
  auto error_of = [](const json& doc) {
    auto s = parse_static_config(doc, "f.yaml");
    return s.ok() ? std::string("ok") : s.status().message();
  };
  EXPECT_NE(error_of(json::object()).find("models: at least one model"), std::string::npos);
  EXPECT_NE(error_of({{"models", {{{"model", "m"}, {"upstreams", {"ftp://x"}}}}}})
                .find("models[0].upstreams[0]"),
            std::string::npos);
  EXPECT_NE(error_of({{"models", {{{"model", "m"}, {"upstreams", {"http://x/v1"}}}}}})
                .find("has no path"),
            std::string::npos);
  EXPECT_NE(error_of({{"models", {{{"model", "m"}, {"upstream", {"http://x"}}}}}})
                .find("models[0].upstream: unknown field"),
            std::string::npos);
  EXPECT_NE(error_of({{"models",
                       {{{"model", "m"}, {"upstreams", {"http://x"}}},
                        {{"model", "m"}, {"upstreams", {"http://y"}}}}}})
                .find("listed twice"),
            std::string::npos);
  EXPECT_NE(
      error_of({{"models", {{{"upstreams", {"http://x"}}}}}}).find("models[0].model: required"),
      std::string::npos);
}

}  // namespace
}  // namespace moeserve::gateway
