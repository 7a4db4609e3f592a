// Shared test fixtures: DeepSeek-V3-shaped specs and ModelDeployment "ds" in "ml".
#pragma once

#include <cstdint>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "operator/deployment/parse.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment::testing {

// Two groups of 16 ranks, 8 GPUs per pod, 256 experts + 32 redundant, $2 per GPU-hour.
inline nlohmann::json v3_spec() {
  return nlohmann::json::parse(R"({
    "model": {"source": "pvc://models/ds/v3", "routedExperts": 256, "moeLayers": 58},
    "replicas": 2,
    "parallelism": {"expertParallel": 16, "ranksPerPod": 8, "redundantExperts": 32},
    "worker": {"image": "w:1", "resources": {"limits": {"nvidia.com/gpu": "8"}}},
    "cost": {"gpuHourUsd": 2.0}
  })");
}

// ModelDeployment ds/ml (uid "uid-1") with `spec`, as read from the API server.
inline ModelDeployment make_deployment(nlohmann::json spec, int64_t generation = 3) {
  return parse_model_deployment(
      {{"metadata",
        {{"name", "ds"}, {"namespace", "ml"}, {"uid", "uid-1"}, {"generation", generation}}},
       {"spec", std::move(spec)}});
}

// make_deployment() of a spec the test expects to be valid.
inline ModelDeployment valid_deployment(nlohmann::json spec, int64_t generation = 3) {
  ModelDeployment md = make_deployment(std::move(spec), generation);
  EXPECT_TRUE(md.valid()) << join_errors(md.errors);
  return md;
}

}  // namespace moeserve::deployment::testing
