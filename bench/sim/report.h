// How the simulator prints its results: one JSON object per policy (exactly the keys
// policy, cost_usd, usd_per_mtok, slo_attainment, ttft_p50_s, ttft_p99_s, group_hours,
// scale_events) or a table, and the gnuplot data and script for --plot. Pure.
#pragma once

#include <string>
#include <vector>

#include "bench/sim/simulator.h"

namespace moeserve::sim {

std::string json_line(const PolicyResult& result);
std::string table(const std::vector<PolicyResult>& results);

// Columns: hours, then per result: demand tokens/s, ready capacity tokens/s (ready x
// target), groups paid; one row per decision of the longest run.
std::string plot_data(const std::vector<PolicyResult>& results, double target_tokens_per_s);
// Draws `data_path` into `png_path`: demand and capacity over time, groups below.
std::string plot_script(const std::vector<PolicyResult>& results, const std::string& data_path,
                        const std::string& png_path);

}  // namespace moeserve::sim
