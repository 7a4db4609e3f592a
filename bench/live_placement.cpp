// bench-live-placement: the end-to-end effect of a live expert-placement switch on a
// 4-rank CPU group (ranks are threads of this process, each with its own gloo Group and
// Engine over one loaded checkpoint) serving skewed prompts.
//
// Skew: every prompt repeats a few token ids, so the (random) router of the generated
// model sends most tokens to a few experts. Phase 1 decodes a batch on the contiguous
// default placement (no replicas); rank 0 measures the step time (between successive
// forwards) and the tokens each rank's slots received (the dispatcher's per-slot
// counts). EPLB (operator/placement/eplb.h) then plans a placement with one redundant
// slot per rank from the measured logical loads, and it is switched to live through
// the group protocol while the group idles (PlacementSwitch: prepare, poll, commit).
// Phase 2 decodes the same batch on the new placement. A warm-up pass first fills the
// prefix cache, so both measured phases run the same steps (decode from a cached
// prompt); the before phase is the baseline measured in the same run. Printed: ms per step before
// and after and their ratio, per-rank balancedness (mean / max tokens per rank, averaged over MoE
// layers) before and after, and the switch's prepare-to-commit time. Greedy outputs of both phases
// are compared (identical by design). Usage: bench-live-placement [--preset tiny|bench-1b]
// [--precision fp8|bf16]
//        [--threads N] [--max-tokens N]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/placement_file.h"
#include "operator/placement/eplb.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/group_step.h"
#include "worker/engine/placement_switch.h"
#include "worker/engine/scheduler.h"
#include "worker/parallel/group.h"
#include "worker/parallel/socket.h"

namespace {

using namespace moeserve;
using SteadyClock = std::chrono::steady_clock;
constexpr int kWorld = 4;

void check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench-live-placement: %s\n", s.to_string().c_str());
    std::exit(1);
  }
}

// Mean over layers of mean / max of the tokens per rank.
double rank_balancedness(const engine::ExpertParallelDispatcher::SlotTokens& now,
                         const engine::ExpertParallelDispatcher::SlotTokens& before) {
  double sum = 0;
  int layers = 0;
  for (size_t l = 0; l < now.tokens.size(); ++l) {
    std::vector<double> ranks(kWorld, 0.0);
    for (size_t s = 0; s < now.tokens[l].size(); ++s) {
      const uint64_t was = s < before.tokens[l].size() ? before.tokens[l][s] : 0;
      ranks[static_cast<int64_t>(s) / now.slots_per_rank] +=
          static_cast<double>(now.tokens[l][s] - was);
    }
    const double max = *std::max_element(ranks.begin(), ranks.end());
    if (max <= 0) continue;
    sum += std::accumulate(ranks.begin(), ranks.end(), 0.0) / kWorld / max;
    ++layers;
  }
  return layers == 0 ? 1.0 : sum / layers;
}

// A loopback port that was free a moment ago.
uint16_t free_port() {
  auto socket = parallel::Socket::listen({"127.0.0.1", 0});
  check(socket.status());
  return socket->local_port();
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset_text = "tiny", precision_text = "fp8";
  int64_t threads = 1, max_tokens = 32;
  FlagSet flags("bench-live-placement", "step time before and after a live placement switch");
  flags.add_string("preset", &preset_text, "generated model preset: tiny | bench-1b");
  flags.add_string("precision", &precision_text, "fp8 | bf16");
  flags.add_int("threads", &threads, "engine threads per rank");
  flags.add_int("max-tokens", &max_tokens, "tokens decoded per request per phase");
  if (std::optional<int> rc = flags.parse_main(argc, argv)) return *rc;

  auto preset = fixtures::parse_preset_flag(preset_text);
  check(preset.status());
  auto precision = fixtures::parse_precision_flag(precision_text);
  check(precision.status());
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("bench-live-placement-" + preset_text + "-" + precision_text))
                              .string();
  fixtures::TinyModelOptions options;
  options.preset = *preset;
  options.precision = *precision;
  options.seed = 5;
  if (!std::filesystem::exists(dir + "/config.json"))
    check(fixtures::write_tiny_model(dir, options));
  auto loaded = model::load_model(dir, model::BindOptions{.load_mtp = false, .prefault = true});
  check(loaded.status());
  auto model = std::make_shared<const model::LoadedModel>(std::move(loaded).value());
  const model::ModelConfig& config = model->config;
  const int64_t experts = config.n_routed_experts;

  // Skewed batch: 8 prompts of 48 tokens, each cycling over 3 ids of a small set.
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 48; ++t) p.push_back(static_cast<int32_t>(10 + (t % 3) + (i % 2)));
    prompts.push_back(p);
  }

  const uint16_t port = free_port();
  std::mutex offer_mutex;
  std::optional<std::string> offer;
  auto rank_main = [&](int rank) {
    parallel::GroupOptions o;
    o.rank = rank;
    o.world_size = kWorld;
    o.leader = "127.0.0.1:" + std::to_string(port);
    auto group = parallel::Group::join(o);
    check(group.status());
    auto engine = engine::Engine::create(
        model, engine::EngineOptions{.threads = static_cast<int>(threads), .record_routing = true});
    check(engine.status());
    auto dispatcher = engine::attach_group_experts(**engine, (*group)->comm(), "");
    check(dispatcher.status());
    engine::PlacementSwitch placement((*group)->comm(), **dispatcher);
    if (rank > 0) {
      check(engine::follow_leader((*group)->comm(), **dispatcher, &placement));
      return;
    }
    engine::LeaderStepper leader((*group)->comm());
    leader.enable_live_placement(&placement, [&]() -> std::optional<std::string> {
      std::lock_guard<std::mutex> lock(offer_mutex);
      std::optional<std::string> out = std::move(offer);
      offer.reset();
      return out;
    });
    engine::SchedulerOptions so;
    so.max_num_seqs = 8;
    engine::install_leader_hooks(leader, 30000, so);
    so.idle_interval = std::chrono::milliseconds(5);
    std::vector<double> step_s;
    std::optional<SteadyClock::time_point> last;
    bool measuring = false;
    so.before_forward = [&, hook = so.before_forward]() -> Status {
      const SteadyClock::time_point now = SteadyClock::now();
      if (measuring && last) step_s.push_back(std::chrono::duration<double>(now - *last).count());
      last = now;
      return hook();
    };
    engine::ExpertParallelDispatcher* d = *dispatcher;
    engine::Scheduler scheduler(std::move(engine).value(), so);
    scheduler.start();
    auto run_phase = [&](std::vector<std::vector<int32_t>>* outputs) {
      step_s.clear();
      last.reset();
      measuring = true;
      std::vector<std::shared_ptr<engine::RequestStream>> streams;
      for (const auto& p : prompts) {
        engine::GenerationRequest r;
        r.prompt = p;
        r.max_tokens = max_tokens;
        auto s = scheduler.submit(r);
        check(s.status());
        streams.push_back(*s);
      }
      outputs->assign(prompts.size(), {});
      for (size_t i = 0; i < streams.size(); ++i) {
        while (!streams[i]->done()) {
          for (const auto& e : streams[i]->next(std::chrono::milliseconds(100))) {
            if (e.has_token) (*outputs)[i].push_back(e.sample.token);
          }
        }
      }
      measuring = false;
      std::vector<double> sorted = step_s;
      std::sort(sorted.begin(), sorted.end());
      return sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
    };

    std::vector<std::vector<int32_t>> warm_out, before_out, after_out;
    run_phase(&warm_out);  // fills the prefix cache, so both measured phases see it alike
    const auto slots0 = d->slot_tokens();
    const engine::ExpertLoad load0 = scheduler.expert_load().total();
    const double before_ms = run_phase(&before_out) * 1e3;
    const auto slots1 = d->slot_tokens();
    const double before_bal = rank_balancedness(slots1, slots0);

    // Plan from the logical loads of phase 1 (experts + one redundant slot per rank).
    const engine::ExpertLoad load1 = scheduler.expert_load().total();
    std::vector<std::vector<double>> weights;
    for (size_t l = 0; l < load1.layers.size(); ++l) {
      std::vector<double> row;
      for (size_t e = 0; e < load1.layers[l].tokens_per_expert.size(); ++e) {
        row.push_back(static_cast<double>(load1.layers[l].tokens_per_expert[e] -
                                          load0.layers[l].tokens_per_expert[e]));
      }
      weights.push_back(row);
    }
    auto plan = placement::rebalance_experts(
        weights, placement::EplbShape{static_cast<int32_t>(experts + kWorld), 1, 1, kWorld});
    check(plan.status());
    PlacementFile file{2, plan->phy2log};
    {
      std::lock_guard<std::mutex> lock(offer_mutex);
      offer = placement_file_to_json(file).dump();
    }
    while (placement.report().committed + placement.report().aborted == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const engine::PlacementSwitchReport report = placement.report();
    const auto slots2 = d->slot_tokens();
    const double after_ms = run_phase(&after_out) * 1e3;
    const double after_bal = rank_balancedness(d->slot_tokens(), slots2);
    scheduler.stop();
    check(leader.stop());

    std::printf(
        "bench-live-placement: %s %s, %d ranks (threads of one process), %lld engine "
        "thread(s) per rank, %zu skewed prompts x %lld tokens per phase\n",
        preset_text.c_str(), precision_text.c_str(), kWorld, static_cast<long long>(threads),
        prompts.size(), static_cast<long long>(max_tokens));
    std::printf("  switch: %s, version %lld, prepare-to-commit %.1f ms%s%s\n",
                report.committed == 1 ? "committed" : "aborted",
                static_cast<long long>(report.committed == 1 ? report.running_version
                                                             : report.failed_version),
                report.last_duration_seconds * 1e3, report.failure.empty() ? "" : ": ",
                report.failure.c_str());
    std::printf("  rank balancedness (mean/max tokens per rank): before %.3f, after %.3f\n",
                before_bal, after_bal);
    std::printf("  median step time: before %.2f ms, after %.2f ms, after/before %.3f\n", before_ms,
                after_ms, after_ms / before_ms);
    std::printf("  greedy outputs identical across the switch: %s\n",
                before_out == after_out ? "yes" : "NO");
  };
  std::vector<std::thread> followers;
  for (int r = 1; r < kWorld; ++r) followers.emplace_back(rank_main, r);
  rank_main(0);
  for (auto& t : followers) t.join();
  return 0;
}
