// moeserve-placement: plans an expert placement from measured loads with the operator's
// planner (operator/placement/planner.h). Flags -> plan_experts -> stdout; nothing else.
//   moeserve-placement plan --input loads.json --slots S --ranks R [--groups G]
//     [--nodes N] [--policy eplb|refined|global|auto] [--json] [traffic model flags]
// Exit codes: 0 planned; 2 bad flags or bad input (the reason on stderr).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/file.h"
#include "common/flags.h"
#include "operator/placement/bound.h"
#include "operator/placement/eplb.h"
#include "operator/placement/loads_json.h"
#include "operator/placement/planner.h"

namespace {

namespace placement = moeserve::placement;

int fail(const std::string& message) {
  std::fprintf(stderr, "moeserve-placement: %s\n", message.c_str());
  return 2;
}

int run_plan(const std::vector<std::string>& args) {
  std::string input;
  int64_t slots = 0, ranks = 0, groups = 1, nodes = 1;
  std::string policy_text = "auto";
  bool json = false;
  placement::TrafficModel traffic;
  moeserve::FlagSet flags(
      "moeserve-placement plan --input loads.json --slots S --ranks R [--groups G] [--nodes N] "
      "[--policy eplb|refined|global|auto] [--json]",
      "Plans which logical expert each physical slot holds, per MoE layer, from measured "
      "loads {\"load\": [[...], ...]} (layers x experts). Rank g holds slots "
      "[g*S/R, (g+1)*S/R). Prints the plan as JSON with --json, else a summary.");
  flags.add_string("input", &input, "loads JSON file");
  flags.add_int("slots", &slots, "physical expert slots per layer (experts + redundant)");
  flags.add_int("ranks", &ranks, "ranks (GPUs) of one model copy");
  flags.add_int("groups", &groups, "expert groups of the model (DeepSeek-V3: 8)");
  flags.add_int("nodes", &nodes, "nodes of one model copy");
  flags.add_string("policy", &policy_text, "eplb, refined, global or auto");
  flags.add_bool("json", &json, "print {phy2log, logcnt, balancedness, bound, time_s, ...}");
  flags.add_double("intra-node-bytes-per-s", &traffic.intra_node_bytes_per_s,
                   "auto: per-rank bandwidth within a node");
  flags.add_double("inter-node-bytes-per-s", &traffic.inter_node_bytes_per_s,
                   "auto: per-rank bandwidth between nodes");
  flags.add_double("bytes-per-token-hop", &traffic.bytes_per_token_hop,
                   "auto: dispatch + combine bytes per token per destination");
  flags.add_double("compute-s-per-token-expert", &traffic.compute_s_per_token_expert,
                   "auto: seconds of one expert's FFN for one token");
  flags.add_double("experts-per-token", &traffic.experts_per_token,
                   "auto: routed experts per token");
  flags.add_double("groups-per-token", &traffic.groups_per_token,
                   "auto: groups a token's experts come from (topk_group)");
  if (moeserve::Status s = flags.parse(args); !s.ok()) {
    std::fprintf(stderr, "%s\n%s", s.message().c_str(), flags.help().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  if (!flags.positional().empty()) return fail("unexpected argument " + flags.positional()[0]);
  if (input.empty()) return fail("--input is required");
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"slots", slots},
                                    {"ranks", ranks},
                                    {"groups", groups},
                                    {"nodes", nodes}}) {
    if (value < 1 || value > std::numeric_limits<int32_t>::max()) {
      return fail(std::string("--") + name + " must be a positive integer, got " +
                  std::to_string(value));
    }
  }
  auto policy = placement::parse_policy(policy_text);
  if (!policy.ok()) return fail(policy.status().message());
  auto text = moeserve::read_file(input);
  if (!text.ok()) return fail(text.status().message());
  auto loads = placement::parse_loads_json(*text);
  if (!loads.ok()) return fail(input + ": " + loads.status().message());

  const placement::EplbShape shape{static_cast<int32_t>(slots), static_cast<int32_t>(groups),
                                   static_cast<int32_t>(nodes), static_cast<int32_t>(ranks)};
  placement::PlannerOptions options;
  options.policy = *policy;
  options.traffic = traffic;
  const auto start = std::chrono::steady_clock::now();
  auto result = placement::plan_experts(*loads, shape, options);
  const double time_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!result.ok()) return fail(result.status().message());
  const double balancedness = placement::balancedness(*loads, result->plan.phy2log, shape.num_gpus);
  const double bound = placement::balancedness_bound(*loads, shape, result->keep_groups_on_nodes);
  if (json) {
    std::printf("%s\n",
                placement::plan_to_json(*result, balancedness, bound, time_s).dump().c_str());
    return 0;
  }
  auto eplb = placement::plan_experts(*loads, shape, {placement::Policy::kEplb, traffic});
  const double eplb_balancedness =
      eplb.ok() ? placement::balancedness(*loads, eplb->plan.phy2log, shape.num_gpus) : 0;
  std::printf(
      "policy %s (%s): %zu layers x %zu experts, %d slots over %d ranks on %d nodes, "
      "%d groups\n",
      std::string(placement::policy_name(result->used)).c_str(),
      result->keep_groups_on_nodes ? "expert groups kept on nodes" : "replicas spread across nodes",
      loads->size(), (*loads)[0].size(), shape.num_slots, shape.num_gpus, shape.num_nodes,
      shape.num_groups);
  std::printf("balancedness %.4f (eplb %.4f, upper bound %.4f under the same locality)\n",
              balancedness, eplb_balancedness, bound);
  if (*policy == placement::Policy::kAuto && result->locality.grouped_step_s > 0) {
    std::printf("cost model: %.3g s grouped vs %.3g s spread over the window's layers\n",
                result->locality.grouped_step_s, result->locality.spread_step_s);
  }
  std::printf("planned in %.1f ms\n", time_s * 1e3);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return moeserve::run_cli("moeserve-placement",
                           "Expert placement planning from measured expert loads.",
                           {{"plan", "plan a placement from a loads file", run_plan}}, argc, argv);
}
