#include "operator/placement/loads_json.h"

#include <cmath>
#include <string>

namespace moeserve::placement {

StatusOr<std::vector<std::vector<double>>> parse_loads_json(std::string_view text) {
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return invalid_argument_error("loads: not valid JSON");
  if (!doc.is_object() || !doc.contains("load")) {
    return invalid_argument_error("loads: expected an object {\"load\": [[...], ...]}");
  }
  const nlohmann::json& load = doc["load"];
  if (!load.is_array() || load.empty()) {
    return invalid_argument_error("loads: load must be a non-empty list of rows");
  }
  std::vector<std::vector<double>> out;
  for (size_t l = 0; l < load.size(); ++l) {
    const std::string where = "loads: load[" + std::to_string(l) + "]";
    if (!load[l].is_array() || load[l].empty()) {
      return invalid_argument_error(where + " must be a non-empty list of numbers");
    }
    if (l > 0 && load[l].size() != out[0].size()) {
      return invalid_argument_error(where + " has " + std::to_string(load[l].size()) +
                                    " experts, load[0] has " + std::to_string(out[0].size()) +
                                    " (ragged rows)");
    }
    std::vector<double> row;
    for (size_t e = 0; e < load[l].size(); ++e) {
      const nlohmann::json& v = load[l][e];
      const std::string at = where + "[" + std::to_string(e) + "]";
      if (!v.is_number()) return invalid_argument_error(at + " is not a number");
      const double w = v.get<double>();
      if (!std::isfinite(w) || w < 0) {
        return invalid_argument_error(at + " = " + v.dump() +
                                      ": loads must be finite and non-negative");
      }
      row.push_back(w);
    }
    out.push_back(std::move(row));
  }
  return out;
}

nlohmann::json plan_to_json(const PlannerResult& result, double balancedness, double bound,
                            double time_s) {
  nlohmann::json out;
  out["phy2log"] = result.plan.phy2log;
  out["logcnt"] = result.plan.logcnt;
  out["balancedness"] = balancedness;
  out["bound"] = bound;
  out["policy"] = std::string(policy_name(result.used));
  out["keep_groups_on_nodes"] = result.keep_groups_on_nodes;
  out["time_s"] = time_s;
  return out;
}

}  // namespace moeserve::placement
