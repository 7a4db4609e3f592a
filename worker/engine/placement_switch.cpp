#include "worker/engine/placement_switch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "common/log.h"
#include "common/placement_file.h"

namespace moeserve::engine {
namespace {

// One rank's state in a poll: fixed size, so one all_gather carries every rank's.
struct PollRecord {
  int32_t state = 0;
  char reason[252] = {};
};
static_assert(sizeof(PollRecord) == 256);

const RealClock kRealClock;

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// The byte ranges of a tensor: its weights, then its block scales (if any).
std::vector<std::pair<const uint8_t*, size_t>> ranges_of(const model::Linear& l) {
  std::vector<std::pair<const uint8_t*, size_t>> out;
  if (l.empty()) return out;
  size_t scale_bytes = 0;
  if (l.scale_inv != nullptr) {
    scale_bytes = static_cast<size_t>(l.scale_rows() * l.scale_cols()) * sizeof(float);
    out.emplace_back(reinterpret_cast<const uint8_t*>(l.scale_inv), scale_bytes);
  }
  out.emplace_back(l.data, l.bytes() - scale_bytes);
  return out;
}

// The tensors of the experts a rank holds in `local` but not in `other`, per layer.
std::vector<const model::Linear*> experts_missing_from(const parallel::ExpertPlacement& local,
                                                       const parallel::ExpertPlacement& other,
                                                       int rank, const model::ModelWeights& w) {
  std::vector<const model::Linear*> out;
  for (int64_t layer : local.moe_layers()) {
    auto held = [rank, layer](const parallel::ExpertPlacement& p) {
      std::set<int32_t> experts;
      if (!p.has_layer(layer)) return experts;
      const std::vector<int32_t>& phy2log = p.phy2log(layer);
      for (int64_t s = p.first_slot(rank); s < p.first_slot(rank) + p.slots_per_rank(); ++s) {
        experts.insert(phy2log[s]);
      }
      return experts;
    };
    const std::set<int32_t> mine = held(local), theirs = held(other);
    for (int32_t e : mine) {
      if (theirs.count(e) != 0) continue;
      const model::Mlp& mlp = w.layer(layer).moe.experts[e];
      out.insert(out.end(), {&mlp.gate_proj, &mlp.up_proj, &mlp.down_proj});
    }
  }
  return out;
}

}  // namespace

StatusOr<parallel::ExpertPlacement> parse_group_placement(const std::string& text,
                                                          const std::string& source, int world_size,
                                                          const model::ModelConfig& config,
                                                          const std::vector<int64_t>& layers) {
  StatusOr<parallel::ExpertPlacement> full =
      parallel::ExpertPlacement::parse(text, source, world_size, config.n_routed_experts, layers);
  const std::vector<int64_t> main_layers = config.moe_layers();
  if (full.ok() || main_layers.empty() || main_layers.size() == layers.size()) return full;
  StatusOr<parallel::ExpertPlacement> main = parallel::ExpertPlacement::parse(
      text, source, world_size, config.n_routed_experts, main_layers);
  if (!main.ok()) return full;
  std::vector<std::vector<int32_t>> phy2log;
  for (int64_t layer : layers) {
    phy2log.push_back(main->phy2log(layer < config.num_hidden_layers ? layer : main_layers.back()));
  }
  return parallel::ExpertPlacement::create(world_size, config.n_routed_experts, layers,
                                           std::move(phy2log), source, main->version());
}

Status fault_in_pages(const std::vector<const model::Linear*>& added,
                      const std::atomic<bool>& cancel) {
  const size_t page = page_size();
  volatile uint8_t sink = 0;
  for (const model::Linear* l : added) {
    for (const auto& [data, bytes] : ranges_of(*l)) {
      if (cancel.load()) return unavailable_error("placement switch cancelled");
      const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
      const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
      if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED) != 0) {
        return internal_error(l->name + ": madvise(MADV_WILLNEED): " + std::strerror(errno));
      }
      uint8_t acc = 0;
      // Tensors lie inside the checkpoint mapping or the weight copy, both page-aligned.
      for (uintptr_t p = begin; p < end; p += page) acc ^= *reinterpret_cast<const uint8_t*>(p);
      sink = sink ^ acc;
    }
  }
  return ok_status();
}

StatusOr<MatrixCopies> copy_matrices(const std::vector<const model::Linear*>& added,
                                     const model::ModelWeights& weights,
                                     const std::atomic<bool>& cancel) {
  MatrixCopies copies;
  for (const model::Linear* l : added) {
    if (cancel.load()) return unavailable_error("placement switch cancelled");
    if (l->empty() || copies.count(l->data) != 0 || weights.in_copy(l->data)) continue;
    const size_t bytes = static_cast<size_t>(l->rows * l->cols) * model::dtype_size(l->dtype);
    std::shared_ptr<uint8_t> copy = model::allocate_weight_memory(bytes);
    if (copy == nullptr) {
      return resource_exhausted_error(l->name + ": cannot allocate " + std::to_string(bytes) +
                                      " bytes for its copy");
    }
    std::memcpy(copy.get(), l->data, bytes);
    model::drop_whole_pages(l->data, bytes);
    copies.emplace(l->data, std::move(copy));
  }
  return copies;
}

void use_copies(const MatrixCopies& copies, std::vector<std::vector<MlpWeights>>& local) {
  for (std::vector<MlpWeights>& layer : local) {
    for (MlpWeights& e : layer) {
      for (kernels::WeightView* v : {&e.gate, &e.up, &e.down}) {
        if (auto it = copies.find(v->data); it != copies.end()) v->data = it->second.get();
      }
    }
  }
}

void drop_pages(const std::vector<const model::Linear*>& removed,
                const model::ModelWeights& weights) {
  for (const model::Linear* l : removed) {
    for (const auto& [data, bytes] : ranges_of(*l)) {
      if (!weights.in_copy(data)) model::drop_whole_pages(data, bytes);
    }
  }
}

PlacementSwitch::PlacementSwitch(parallel::Communicator& comm, ExpertParallelDispatcher& dispatcher,
                                 SlotPreparer preparer, const Clock* clock)
    : comm_(comm),
      dispatcher_(dispatcher),
      preparer_(preparer ? std::move(preparer) : SlotPreparer(fault_in_pages)),
      clock_(clock != nullptr ? clock : &kRealClock) {
  report_.running_version = dispatcher.placement().version();
}

PlacementSwitch::~PlacementSwitch() {
  if (prepared_ != nullptr) {
    prepared_->cancel.store(true);
    if (prepared_->worker.joinable()) prepared_->worker.join();
  }
}

bool PlacementSwitch::should_begin(const std::string& text) {
  StatusOr<PlacementFile> file = parse_placement_file(text, "placement file");
  std::lock_guard<std::mutex> lock(report_mutex_);
  if (!file.ok()) {
    if (report_.failure != file.status().message()) {
      log::warn("placement file not switched to", {{"error", file.status().message()}});
      ++report_.aborted;
      report_.failed_version = 0;
      report_.failure = file.status().message();
    }
    return false;
  }
  return file->version > report_.running_version && file->version != report_.failed_version;
}

void PlacementSwitch::fail_locally(Prepared& p, std::string reason) {
  p.failure = std::move(reason);
  p.state.store(kFailed);
}

Status PlacementSwitch::begin(const std::string& text) {
  std::string payload = comm_.rank() == 0 ? text : std::string();
  int64_t length = static_cast<int64_t>(payload.size());
  MOESERVE_RETURN_IF_ERROR(comm_.broadcast(&length, sizeof(length), 0));
  payload.resize(static_cast<size_t>(length));
  if (length > 0) MOESERVE_RETURN_IF_ERROR(comm_.broadcast(payload.data(), length, 0));

  auto p = std::make_unique<Prepared>();
  p->started = clock_->now();
  const model::ModelWeights& weights = dispatcher_.weights();
  StatusOr<parallel::ExpertPlacement> placement = parse_group_placement(
      payload, "placement", comm_.size(), dispatcher_.config(), weights.moe_layers());
  if (StatusOr<PlacementFile> file = parse_placement_file(payload, "placement"); file.ok()) {
    p->version = file->version;
  }
  if (!placement.ok()) {
    fail_locally(*p, placement.status().message());
  } else {
    StatusOr<std::vector<std::vector<MlpWeights>>> local = ExpertParallelDispatcher::bind_slots(
        *placement, comm_.size(), comm_.rank(), dispatcher_.config(), weights);
    if (!local.ok()) {
      fail_locally(*p, local.status().message());
    } else {
      p->local = std::move(local).value();
      use_copies(live_copies_, p->local);  // experts that came by earlier switches and stay
      const int rank = comm_.rank();
      std::vector<const model::Linear*> added =
          experts_missing_from(*placement, dispatcher_.placement(), rank, weights);
      p->removed = experts_missing_from(dispatcher_.placement(), *placement, rank, weights);
      p->placement = std::move(placement).value();
      Prepared* raw = p.get();
      p->worker = std::thread([this, raw, added = std::move(added)] {
        Status s = preparer_(added, raw->cancel);
        if (s.ok() && dispatcher_.weights().copied_storage != nullptr) {
          StatusOr<MatrixCopies> copies = copy_matrices(added, dispatcher_.weights(), raw->cancel);
          if (copies.ok()) {
            raw->copies = std::move(copies).value();
            use_copies(raw->copies, raw->local);
          } else {
            s = copies.status();
          }
        }
        if (s.ok()) {
          raw->state.store(kReady);
        } else {
          fail_locally(*raw, s.message());
        }
      });
    }
  }
  {
    std::lock_guard<std::mutex> lock(report_mutex_);
    report_.preparing_version = p->version;
  }
  log::info("placement switch: preparing", {{"rank", comm_.rank()}, {"version", p->version}});
  prepared_ = std::move(p);
  return ok_status();
}

StatusOr<SwitchOutcome> PlacementSwitch::poll() {
  Prepared& p = *prepared_;
  PollRecord mine;
  mine.state = p.state.load();
  if (mine.state == kFailed) {
    std::strncpy(mine.reason, p.failure.c_str(), sizeof(mine.reason) - 1);
  }
  std::vector<PollRecord> all(static_cast<size_t>(comm_.size()));
  MOESERVE_RETURN_IF_ERROR(comm_.all_gather(&mine, sizeof(mine), all.data()));

  SwitchOutcome outcome;
  outcome.version = p.version;
  int ready = 0;
  for (int r = 0; r < comm_.size(); ++r) {
    if (all[r].state == kFailed && outcome.kind != SwitchOutcome::Kind::kAborted) {
      outcome.kind = SwitchOutcome::Kind::kAborted;
      all[r].reason[sizeof(all[r].reason) - 1] = '\0';
      outcome.reason = "rank " + std::to_string(r) + ": " + all[r].reason;
    }
    if (all[r].state == kReady) ++ready;
  }
  if (outcome.kind != SwitchOutcome::Kind::kAborted && ready < comm_.size()) return outcome;
  if (outcome.kind != SwitchOutcome::Kind::kAborted) outcome.kind = SwitchOutcome::Kind::kCommitted;

  p.cancel.store(outcome.kind == SwitchOutcome::Kind::kAborted);
  if (p.worker.joinable()) p.worker.join();
  outcome.seconds = std::chrono::duration<double>(clock_->now() - p.started).count();
  if (outcome.kind == SwitchOutcome::Kind::kCommitted) {
    dispatcher_.switch_to(std::move(*p.placement), std::move(p.local));
    drop_pages(p.removed, dispatcher_.weights());
    // The dispatcher no longer reads the removed experts: their copies can go.
    for (const model::Linear* l : p.removed) live_copies_.erase(l->data);
    live_copies_.merge(p.copies);
  }
  prepared_.reset();
  finish(outcome);
  return outcome;
}

void PlacementSwitch::finish(SwitchOutcome outcome) {
  {
    std::lock_guard<std::mutex> lock(report_mutex_);
    report_.preparing_version = 0;
    if (outcome.kind == SwitchOutcome::Kind::kCommitted) {
      ++report_.committed;
      report_.running_version = outcome.version;
      report_.last_duration_seconds = outcome.seconds;
    } else {
      ++report_.aborted;
      report_.failed_version = outcome.version;
      report_.failure = outcome.reason;
    }
  }
  if (outcome.kind == SwitchOutcome::Kind::kCommitted) {
    log::info("placement switch: committed",
              {{"rank", comm_.rank()}, {"version", outcome.version}, {"seconds", outcome.seconds}});
  } else {
    log::warn("placement switch: aborted; keeping the running placement",
              {{"rank", comm_.rank()}, {"version", outcome.version}, {"reason", outcome.reason}});
  }
}

PlacementSwitchReport PlacementSwitch::report() const {
  std::lock_guard<std::mutex> lock(report_mutex_);
  return report_;
}

}  // namespace moeserve::engine
