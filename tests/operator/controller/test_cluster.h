// Shared set-up of the controller integration tests: the strict test API server with
// the ModelDeployment CRD installed and one namespace, a client for it, and controller
// options tuned for tests (fast backoff, short watch reads).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/yaml_json.h"
#include "operator/controller/controller.h"
#include "operator/kube/client.h"
#include "operator/kube/transport.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::controller {

struct TestCluster {
  moeserve::testing::ApiServer api;
  std::unique_ptr<kube::Client> client;

  // Starts the server, installs deploy/crds and creates namespace `ns` (the client's
  // default namespace). Use with ASSERT_NO_FATAL_FAILURE.
  void start(const std::string& ns) {
    ASSERT_TRUE(api.start().ok());
    kube::Config config;
    config.server = api.url();
    auto transport = std::make_shared<kube::HttpTransport>(config);
    ASSERT_TRUE(transport->init().ok());
    client = std::make_unique<kube::Client>(transport, api.url(), ns);
    auto crds = load_yaml_documents(moeserve::testing::source_dir() +
                                    "/deploy/crds/modeldeployments.moeserve.io.yaml");
    ASSERT_TRUE(crds.ok()) << crds.status().to_string();
    for (const auto& crd : *crds) {
      ASSERT_TRUE(client->create(kube::resources::kCustomResourceDefinitions, "", crd).ok());
    }
    ASSERT_TRUE(
        client
            ->create(kube::resources::kNamespaces, "",
                     {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}})
            .ok());
  }

  static ControllerOptions fast_options() {
    using namespace std::chrono_literals;
    ControllerOptions options;
    options.workers = 2;
    options.rate_limit.base_delay = 5ms;
    options.rate_limit.max_delay = 500ms;
    options.reflector_options.backoff_initial_ms = 20;
    options.reflector_options.backoff_max_ms = 200;
    options.reflector_options.watch_read_timeout_ms = 3000;
    return options;
  }
};

}  // namespace moeserve::controller
