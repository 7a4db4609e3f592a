// Plays the StatefulSet controller and the kubelet for a group the operator created:
// the rank-0 pod of StatefulSet `sts` (its template's labels plus the pod-index label
// Kubernetes sets, owned by the StatefulSet so deleting the group deletes it), with
// status.podIP and the Ready condition as given.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "operator/kube/client.h"

namespace moeserve::gateway {

inline nlohmann::json rank_zero_pod(const kube::Client& client, const nlohmann::json& sts,
                                    const std::string& ip, bool ready) {
  const std::string ns = sts["metadata"]["namespace"];
  const std::string name = sts["metadata"]["name"].get<std::string>() + "-0";
  nlohmann::json labels = sts["spec"]["template"]["metadata"]["labels"];
  labels["apps.kubernetes.io/pod-index"] = "0";
  auto existing = client.get(kube::resources::kPods, ns, name);
  nlohmann::json pod;
  if (existing.ok()) {
    pod = *existing;
  } else {
    pod = {{"apiVersion", "v1"},
           {"kind", "Pod"},
           {"metadata",
            {{"name", name},
             {"namespace", ns},
             {"labels", labels},
             {"ownerReferences",
              {{{"apiVersion", "apps/v1"},
                {"kind", "StatefulSet"},
                {"name", sts["metadata"]["name"]},
                {"uid", sts["metadata"]["uid"]},
                {"controller", true}}}}}},
           {"spec", {{"containers", {{{"name", "worker"}, {"image", "w"}}}}}}};
    auto created = client.create(kube::resources::kPods, ns, pod);
    EXPECT_TRUE(created.ok()) << created.status().to_string();
    if (!created.ok()) return {};
    pod = *created;
  }
  pod["status"] = {{"podIP", ip},
                   {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}};
  auto written = client.update_status(kube::resources::kPods, ns, pod);
  EXPECT_TRUE(written.ok()) << written.status().to_string();
  return written.ok() ? *written : nlohmann::json();
}

}  // namespace moeserve::gateway
