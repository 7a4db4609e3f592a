// Test fixture: an in-process test API server and a kube::Client pointed at it through
// a kubeconfig, as the operator would load it.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::kube {

class KubeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    moeserve::testing::ApiServerOptions options;
    options.bookmark_interval_ms = 50;  // keeps watches responsive to stop()
    options.history_limit = 200;
    server_ = std::make_unique<moeserve::testing::ApiServer>(options);
    ASSERT_TRUE(server_->start().ok());
    moeserve::testing::write_file(dir_.file("kubeconfig"), server_->kubeconfig("default"));
    auto config = load_kubeconfig(dir_.file("kubeconfig"));
    ASSERT_TRUE(config.ok()) << config.status().to_string();
    auto client = Client::create_for(*config);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    client_ = std::move(*client);
  }

  static nlohmann::json config_map(const std::string& name, nlohmann::json labels = nullptr) {
    nlohmann::json object = {{"apiVersion", "v1"},
                             {"kind", "ConfigMap"},
                             {"metadata", {{"name", name}}},
                             {"data", {{"key", name}}}};
    if (!labels.is_null()) object["metadata"]["labels"] = labels;
    return object;
  }

  // A namespaced CRD "widgets.example.com" with status + scale subresources, defaults
  // and a few validation rules.
  static nlohmann::json widget_crd() {
    return nlohmann::json::parse(R"({
      "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
      "metadata": {"name": "widgets.example.com"},
      "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"], "categories": ["gadgets"]},
        "versions": [{"name": "v1", "served": true, "storage": true,
          "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
              "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
          "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
              "size": {"type": "string", "enum": ["small", "large"]},
              "replicas": {"type": "integer", "minimum": 0, "default": 1},
              "tuning": {"type": "object", "default": {}, "properties": {
                "level": {"type": "integer", "default": 3}}}}},
            "status": {"type": "object", "properties": {
              "replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}}}]}})");
  }

  static const ResourceRef& widgets() {
    static const ResourceRef kWidgets{"example.com", "v1", "widgets", true};
    return kWidgets;
  }

  moeserve::testing::TempDir dir_;
  std::unique_ptr<moeserve::testing::ApiServer> server_;
  std::unique_ptr<Client> client_;
};

}  // namespace moeserve::kube
