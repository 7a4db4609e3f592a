// /metrics scraped by the real Prometheus server (Debian package `prometheus`), and the
// value read back through its HTTP query API.
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "tests/support/test_util.h"

namespace moeserve {
namespace {

using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using moeserve::testing::write_file;
using namespace std::chrono_literals;

constexpr const char* kPrometheus = "/usr/bin/prometheus";

// Value of an instant query's first sample, or "" when there is none yet.
std::string query(const http::Client& client, uint16_t port, const std::string& promql) {
  std::string encoded;
  for (char c : promql) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      encoded += c;
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      encoded += buf;
    }
  }
  auto r =
      client.send({"GET",
                   "http://127.0.0.1:" + std::to_string(port) + "/api/v1/query?query=" + encoded,
                   {},
                   ""});
  if (!r.ok() || r->status != 200) return "";
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || j["data"]["result"].empty()) return "";
  return j["data"]["result"][0]["value"][1].get<std::string>();
}

TEST(PrometheusScrape, RealServerReadsOurMetrics) {
  ASSERT_EQ(access(kPrometheus, X_OK), 0) << "install the Debian package prometheus "
                                             "(scripts/install-deps.sh)";
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("moeserve_test_queue_depth")
      .Help("test gauge")
      .Register(*registry)
      .Add({{"model", "tiny"}})
      .Set(42.5);
  prometheus::BuildCounter()
      .Name("moeserve_test_tokens_total")
      .Help("test counter")
      .Register(*registry)
      .Add({})
      .Increment(1234);
  http::Server server({});
  metrics::add_metrics_route(server, {registry});
  ASSERT_TRUE(server.start().ok());

  TempDir dir;
  uint16_t prom_port = free_port();
  write_file(dir.file("prometheus.yml"),
             "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
             "scrape_configs:\n  - job_name: moeserve\n    static_configs:\n"
             "      - targets: ['127.0.0.1:" +
                 std::to_string(server.port()) + "']\n");
  Process prometheus({kPrometheus, "--config.file=" + dir.file("prometheus.yml"),
                      "--storage.tsdb.path=" + dir.file("data"),
                      "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                     dir.file("prometheus.log"));
  http::Client client;
  std::string gauge;
  bool scraped = wait_until(
      [&] {
        gauge =
            query(client, prom_port, "moeserve_test_queue_depth{model=\"tiny\",job=\"moeserve\"}");
        return !gauge.empty();
      },
      60s);
  ASSERT_TRUE(scraped) << moeserve::testing::read_file(dir.file("prometheus.log"));
  EXPECT_EQ(gauge, "42.5");
  EXPECT_EQ(query(client, prom_port, "moeserve_test_tokens_total"), "1234");
  EXPECT_EQ(query(client, prom_port, "up{job=\"moeserve\"}"), "1");
  prometheus.signal(SIGTERM);
  EXPECT_EQ(prometheus.wait(30s), 0);
}

}  // namespace
}  // namespace moeserve
