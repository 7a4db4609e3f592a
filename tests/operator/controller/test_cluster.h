// Shared set-up of the controller integration tests: the strict test API server with
// the ModelDeployment CRD installed and one namespace, a client for it, and controller
// options tuned for tests (fast backoff, short watch reads).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/yaml_json.h"
#include "operator/controller/controller.h"
#include "operator/deployment/names.h"
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

  // The live (not terminating) StatefulSets of deployment `name`, by name; empty when the
  // list fails.
  std::map<std::string, nlohmann::json> groups(const std::string& ns, const std::string& name) {
    std::map<std::string, nlohmann::json> out;
    kube::ListOptions options;
    options.label_selector = std::string(deployment::kLabelDeployment) + "=" + name;
    auto list = client->list(kube::resources::kStatefulSets, ns, options);
    if (!list.ok()) return out;
    for (auto& item : list->items) {
      if (item["metadata"].contains("deletionTimestamp")) continue;
      out[item["metadata"]["name"].get<std::string>()] = item;
    }
    return out;
  }

  // Plays the StatefulSet controller: every pod of every group of `name` is ready. A lost
  // write (an injected fault) leaves a group unready; callers that expect faults wait for
  // Ready and call again.
  void mark_groups_ready(const std::string& ns, const std::string& name) {
    for (auto& [sts_name, sts] : groups(ns, name)) {
      if (sts.contains("status") &&
          sts["status"].value("readyReplicas", 0) == sts["spec"].value("replicas", 0) &&
          sts["status"].value("observedGeneration", int64_t{0}) ==
              sts["metadata"].value("generation", int64_t{0})) {
        continue;
      }
      nlohmann::json updated = sts;
      updated["status"] = {{"replicas", sts["spec"]["replicas"]},
                           {"readyReplicas", sts["spec"]["replicas"]},
                           {"observedGeneration", sts["metadata"]["generation"]}};
      (void)client->update_status(kube::resources::kStatefulSets, ns, updated);
    }
  }

  // The status ("True", "False", ...) of condition `type` of deployment `name`; "" when
  // it has none or the read fails.
  std::string condition(const std::string& ns, const std::string& name, const std::string& type,
                        std::string* reason = nullptr, std::string* message = nullptr) {
    auto md = client->get(kube::resources::kModelDeployments, ns, name);
    if (!md.ok() || !(*md).contains("status") || !(*md)["status"].contains("conditions")) {
      return "";
    }
    for (const auto& c : (*md)["status"]["conditions"]) {
      if (c.value("type", "") == type) {
        if (reason) *reason = c.value("reason", "");
        if (message) *message = c.value("message", "");
        return c.value("status", "");
      }
    }
    return "";
  }

  // deploy/examples/tiny-cpu.yaml as deployment `name` in `ns` with `replicas` groups and
  // autoscaling off.
  static nlohmann::json tiny_deployment(const std::string& ns, const std::string& name,
                                        int replicas) {
    auto docs =
        load_yaml_documents(moeserve::testing::source_dir() + "/deploy/examples/tiny-cpu.yaml");
    EXPECT_TRUE(docs.ok());
    nlohmann::json md = (*docs)[0];
    md["metadata"]["name"] = name;
    md["metadata"]["namespace"] = ns;
    md["spec"]["replicas"] = replicas;
    md["spec"]["autoscaling"]["enabled"] = false;
    return md;
  }

  // Retries a write of a test (whose client meets injected faults too) for up to 20 s
  // until it went through; already_exists after a lost answer counts as done.
  static bool write_until_done(const std::function<Status()>& write) {
    return moeserve::testing::wait_until(
        [&] {
          Status s = write();
          return s.ok() || s.code() == StatusCode::kAlreadyExists;
        },
        std::chrono::seconds(20));
  }

  // Deployment `name`'s status matches its spec (its groups, readyReplicas,
  // observedGeneration, Ready=True); plays the StatefulSet controller meanwhile.
  bool converged(const std::string& ns, const std::string& name) {
    mark_groups_ready(ns, name);
    auto md = client->get(kube::resources::kModelDeployments, ns, name);
    if (!md.ok()) return false;
    const int replicas = (*md)["spec"].value("replicas", 0);
    const auto status = (*md).value("status", nlohmann::json::object());
    return groups(ns, name).size() == static_cast<size_t>(replicas) &&
           status.value("readyReplicas", -1) == replicas &&
           status.value("observedGeneration", int64_t{-1}) ==
               (*md)["metadata"].value("generation", int64_t{0}) &&
           condition(ns, name, "Ready") == "True";
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
