#include "bench/sim/report.h"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace moeserve::sim {

std::string json_line(const PolicyResult& r) {
  const nlohmann::ordered_json j = {{"policy", r.policy},
                                    {"cost_usd", r.cost_usd},
                                    {"usd_per_mtok", r.usd_per_mtok},
                                    {"slo_attainment", r.slo_attainment},
                                    {"ttft_p50_s", r.ttft_p50_s},
                                    {"ttft_p99_s", r.ttft_p99_s},
                                    {"group_hours", r.group_hours},
                                    {"scale_events", r.scale_events}};
  return j.dump() + "\n";
}

std::string table(const std::vector<PolicyResult>& results) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-12s %10s %8s %8s %8s %8s %9s %9s %9s %7s %8s\n", "policy",
                "cost $", "$/Mtok", "SLO %", "TTFT %", "TPOT %", "TTFT p50", "TTFT p99", "group-h",
                "scales", "unserved");
  out += line;
  for (const PolicyResult& r : results) {
    std::snprintf(line, sizeof(line),
                  "%-12s %10.2f %8.4f %8.2f %8.2f %8.2f %8.3fs %8.3fs %9.2f %7lld %8lld\n",
                  r.policy.c_str(), r.cost_usd, r.usd_per_mtok, r.slo_attainment * 100,
                  r.ttft_attainment * 100, r.tpot_attainment * 100, r.ttft_p50_s, r.ttft_p99_s,
                  r.group_hours, static_cast<long long>(r.scale_events),
                  static_cast<long long>(r.unserved));
    out += line;
  }
  return out;
}

std::string plot_data(const std::vector<PolicyResult>& results, double target) {
  size_t rows = 0;
  for (const PolicyResult& r : results) rows = std::max(rows, r.timeline.size());
  std::string out;
  char cell[64];
  for (size_t i = 0; i < rows; ++i) {
    bool first = true;
    for (const PolicyResult& r : results) {
      const TimelinePoint p =
          r.timeline.empty() ? TimelinePoint{} : r.timeline[std::min(i, r.timeline.size() - 1)];
      if (first) {
        std::snprintf(cell, sizeof(cell), "%.4f", p.t_s / 3600);
        out += cell;
        first = false;
      }
      std::snprintf(cell, sizeof(cell), " %.1f %.1f %d", p.demand_tokens_per_s, p.ready * target,
                    p.groups);
      out += cell;
    }
    out += "\n";
  }
  return out;
}

std::string plot_script(const std::vector<PolicyResult>& results, const std::string& data_path,
                        const std::string& png_path) {
  std::string s = "set terminal png size 1400,900\nset output '" + png_path + "'\n";
  s += "set multiplot layout 2,1\nset xlabel 'hours'\nset ylabel 'tokens/s'\nset key outside\n";
  s += "plot '" + data_path + "' using 1:2 with lines title 'demand'";
  for (size_t i = 0; i < results.size(); ++i) {
    s += ", '' using 1:" + std::to_string(3 + 3 * i) + " with steps title '" + results[i].policy +
         " capacity'";
  }
  s += "\nset ylabel 'groups'\nplot ";
  for (size_t i = 0; i < results.size(); ++i) {
    if (i) s += ", ";
    s += "'" + data_path + "' using 1:" + std::to_string(4 + 3 * i) + " with steps title '" +
         results[i].policy + "'";
  }
  return s + "\nunset multiplot\n";
}

}  // namespace moeserve::sim
