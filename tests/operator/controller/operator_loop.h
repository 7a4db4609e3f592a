// The operator's control loop for integration tests, wired as run_operator wires it but
// on fast timings: the controller over the resources the reconciler owns, an event
// recorder, an autoscaler scraping each group's rank 0 (10 s rate window, evaluated every
// 50 ms on the test's clock; a changed decision re-enqueues the deployment), deployment
// gauges, and the reconciler with those autoscaling hooks. start() after the cluster and
// the fake workers are up; stop() before the API server goes.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include <prometheus/registry.h>

#include "common/clock.h"
#include "common/http_client.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/deployment_gauges.h"
#include "operator/autoscaler/scrape_source.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/kube/client.h"
#include "tests/operator/controller/test_cluster.h"

namespace moeserve::controller {

struct OperatorLoop {
  std::unique_ptr<Controller> controller;
  std::unique_ptr<EventRecorder> events;
  std::unique_ptr<autoscaler::ScrapeSource> source;
  std::unique_ptr<autoscaler::Autoscaler> scaler;
  std::unique_ptr<autoscaler::DeploymentGauges> gauges;
  std::unique_ptr<ModelDeploymentReconciler> reconciler;

  void start(const kube::Client& client, const Clock* clock,
             std::shared_ptr<prometheus::Registry> registry) {
    using namespace std::chrono_literals;
    namespace res = kube::resources;
    controller = std::make_unique<Controller>(
        client, res::kModelDeployments,
        std::vector<kube::ResourceRef>{res::kStatefulSets, res::kServices, res::kConfigMaps,
                                       res::kPodDisruptionBudgets, res::kNetworkPolicies,
                                       res::kPods},
        TestCluster::fast_options(), registry);
    events = std::make_unique<EventRecorder>(client, "moeserve-operator");
    autoscaler::ScrapeOptions scrape;
    scrape.rate_window = 10s;
    source = std::make_unique<autoscaler::ScrapeSource>(std::make_shared<http::Client>(), scrape);
    scaler = std::make_unique<autoscaler::Autoscaler>(source.get(), clock,
                                                      autoscaler::AutoscalerOptions{50ms, 2});
    scaler->set_on_change([this](const std::string& key) { controller->enqueue(key); });
    gauges = std::make_unique<autoscaler::DeploymentGauges>(*registry);
    reconciler = std::make_unique<ModelDeploymentReconciler>(
        client, *controller, events.get(), clock,
        AutoscalingHooks{scaler.get(), gauges.get(), {}, 16, 100ms});
    controller->set_reconciler(reconciler.get());
    scaler->start();
    controller->start();
  }

  void stop() {
    if (scaler) scaler->stop();
    if (controller) controller->stop();
  }
};

}  // namespace moeserve::controller
