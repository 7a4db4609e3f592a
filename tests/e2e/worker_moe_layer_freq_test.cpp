// End to end with moe_layer_freq 2: `moeserve-worker serve` on a tiny model whose MoE
// layers are every second layer from first_k_dense_replace on (the Hugging Face rule,
// ModelConfig::is_moe_layer). Its /metrics must carry expert counters for exactly those
// layers, and every routed token must be counted num_experts_per_tok times per layer.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/http_client.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/model/config.h"

namespace moeserve {
namespace {

namespace t = moeserve::testing;
using nlohmann::json;

// layer -> summed moeserve_expert_tokens_total over its experts.
std::map<int64_t, int64_t> expert_tokens_by_layer(const std::string& metrics_text) {
  std::map<int64_t, int64_t> by_layer;
  std::istringstream lines(metrics_text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("moeserve_expert_tokens_total{", 0) != 0) continue;
    const size_t at = line.find("layer=\"");
    const size_t value = line.rfind(' ');
    if (at == std::string::npos || value == std::string::npos) continue;
    const int64_t layer = std::stoll(line.substr(at + 7));
    by_layer[layer] += static_cast<int64_t>(std::stod(line.substr(value + 1)));
  }
  return by_layer;
}

TEST(WorkerMoeLayerFreqTest, ExpertMetricsCoverExactlyTheMoeLayers) {
  t::TempDir dir;
  const std::string model_dir = dir.file("model");
  fixtures::TinyModelOptions options;
  options.num_hidden_layers = 5;
  options.moe_layer_freq = 2;
  ASSERT_TRUE(fixtures::write_tiny_model(model_dir, options).ok());
  auto config = model::load_config(model_dir);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  const std::vector<int64_t> moe_layers = config->moe_layers();
  ASSERT_EQ(moe_layers, (std::vector<int64_t>{2, 4}));

  const uint16_t port = t::free_port();
  const std::string log = dir.file("worker.log");
  t::Process worker({t::bin_dir() + "/moeserve-worker", "serve", "--model", model_dir, "--port",
                     std::to_string(port), "--threads", "2", "--served-model-name", "tiny"},
                    log);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  http::Client client;
  ASSERT_TRUE(t::wait_until(
      [&] {
        auto r = client.send({"GET", base + "/readyz", {}, ""});
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(30)))
      << t::read_file(log);

  const json body = {{"model", "tiny"},
                     {"prompt", std::vector<int>{5, 17, 42, 99, 7}},
                     {"max_tokens", 6},
                     {"temperature", 0}};
  auto r = client.send({"POST",
                        base + "/v1/completions",
                        {{"Content-Type", "application/json"}},
                        body.dump(),
                        60000});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->status, 200) << r->body;
  const json completion = json::parse(r->body);
  const int64_t completion_tokens = completion["usage"]["completion_tokens"];

  auto metrics = client.send({"GET", base + "/metrics", {}, ""});
  ASSERT_TRUE(metrics.ok());
  const std::map<int64_t, int64_t> by_layer = expert_tokens_by_layer(metrics->body);
  std::vector<int64_t> layers;
  for (const auto& [layer, tokens] : by_layer) layers.push_back(layer);
  EXPECT_EQ(layers, moe_layers) << metrics->body;
  // Every forwarded token is routed to num_experts_per_tok experts in each MoE layer: the
  // prompt, then each generated token but the last (it is sampled, never forwarded).
  const int64_t forwarded = 5 + completion_tokens - 1;
  for (const auto& [layer, tokens] : by_layer) {
    EXPECT_EQ(tokens, forwarded * config->num_experts_per_tok) << "layer " << layer;
  }
}

}  // namespace
}  // namespace moeserve
