// The JSON of the placement command line: measured loads in, a plan out. Pure.
//   in:  {"load": [[l0e0, l0e1, ...], [l1e0, ...], ...]}   layers x experts, numbers >= 0
//   out: {"phy2log": [[...]], "logcnt": [[...]], "balancedness": x, "bound": b,
//         "policy": "refined", "keep_groups_on_nodes": true, "time_s": t}
#pragma once

#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/placement/planner.h"

namespace moeserve::placement {

// invalid_argument naming what is wrong: not JSON, no "load" list, a row that is not a
// list, ragged rows, an element that is not a number, negative or non-finite.
StatusOr<std::vector<std::vector<double>>> parse_loads_json(std::string_view text);

nlohmann::json plan_to_json(const PlannerResult& result, double balancedness, double bound,
                            double time_s);

}  // namespace moeserve::placement
