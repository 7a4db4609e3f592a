#include "worker/engine/expert_parallel.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>

#include "kernels/cpu/ops.h"
#include "worker/engine/linear.h"

namespace moeserve::engine {
namespace {

// One dispatched row: the local slot id on the destination rank (int32 bits in the
// first float) followed by the token's hidden state.
constexpr int64_t kHeaderFloats = 1;

}  // namespace

StatusOr<std::vector<std::vector<MlpWeights>>> ExpertParallelDispatcher::bind_slots(
    const parallel::ExpertPlacement& placement, int world_size, int rank,
    const model::ModelConfig& config, const model::ModelWeights& weights) {
  if (placement.world_size() != world_size) {
    return invalid_argument_error("expert parallel: the placement is for " +
                                  std::to_string(placement.world_size()) +
                                  " ranks but the group has " + std::to_string(world_size));
  }
  if (placement.num_experts() != config.n_routed_experts ||
      placement.moe_layers() != weights.moe_layers()) {
    return invalid_argument_error("expert parallel: the placement does not match the model's " +
                                  std::to_string(config.n_routed_experts) +
                                  " routed experts and MoE layers (MTP layers included when "
                                  "loaded)");
  }
  std::vector<std::vector<MlpWeights>> local(weights.layers.size() + weights.mtp.size());
  const int64_t first = placement.first_slot(rank);
  for (int64_t layer : placement.moe_layers()) {
    const std::vector<int32_t>& phy2log = placement.phy2log(layer);
    for (int64_t s = first; s < first + placement.slots_per_rank(); ++s) {
      const model::Mlp& e = weights.layer(layer).moe.experts[phy2log[s]];
      local[layer].push_back(
          MlpWeights{to_view(e.gate_proj), to_view(e.up_proj), to_view(e.down_proj)});
    }
  }
  return local;
}

StatusOr<std::unique_ptr<ExpertParallelDispatcher>> ExpertParallelDispatcher::create(
    parallel::Communicator* comm, parallel::ExpertPlacement placement,
    const model::ModelConfig& config, const model::ModelWeights& weights,
    kernels::ThreadPool* pool) {
  MOESERVE_ASSIGN_OR_RETURN(std::vector<std::vector<MlpWeights>> local,
                            bind_slots(placement, comm->size(), comm->rank(), config, weights));
  return std::unique_ptr<ExpertParallelDispatcher>(new ExpertParallelDispatcher(
      comm, std::move(placement), std::move(local), config, weights, pool));
}

ExpertParallelDispatcher::ExpertParallelDispatcher(
    parallel::Communicator* comm, parallel::ExpertPlacement placement,
    std::vector<std::vector<MlpWeights>> local_experts, const model::ModelConfig& config,
    const model::ModelWeights& weights, kernels::ThreadPool* pool)
    : comm_(comm),
      placement_(std::move(placement)),
      config_(&config),
      weights_(&weights),
      pool_(pool),
      num_main_layers_(config.num_hidden_layers),
      hidden_(config.hidden_size),
      top_k_(config.num_experts_per_tok) {
  local_.emplace(std::move(local_experts), hidden_, pool_);
  for (int64_t layer : placement_.moe_layers()) {
    if (layer >= num_main_layers_) continue;
    slot_tokens_.layers.push_back(layer);
    slot_tokens_.tokens.emplace_back(static_cast<size_t>(placement_.num_slots()), 0);
  }
  slot_tokens_.slots_per_rank = placement_.slots_per_rank();
}

void ExpertParallelDispatcher::switch_to(parallel::ExpertPlacement placement,
                                         std::vector<std::vector<MlpWeights>> local) {
  placement_ = std::move(placement);
  local_.emplace(std::move(local), hidden_, pool_);
  std::lock_guard<std::mutex> lock(slot_mutex_);
  for (auto& row : slot_tokens_.tokens) {
    if (static_cast<int64_t>(row.size()) < placement_.num_slots()) {
      row.resize(static_cast<size_t>(placement_.num_slots()), 0);
    }
  }
  slot_tokens_.slots_per_rank = placement_.slots_per_rank();
}

ExpertParallelDispatcher::SlotTokens ExpertParallelDispatcher::slot_tokens() const {
  std::lock_guard<std::mutex> lock(slot_mutex_);
  return slot_tokens_;
}

void ExpertParallelDispatcher::count_slots(int64_t layer, const std::vector<int64_t>& slot_of) {
  if (slot_of.empty() || layer >= num_main_layers_) return;
  std::lock_guard<std::mutex> lock(slot_mutex_);
  const auto at = std::lower_bound(slot_tokens_.layers.begin(), slot_tokens_.layers.end(), layer);
  if (at == slot_tokens_.layers.end() || *at != layer) return;
  std::vector<uint64_t>& row = slot_tokens_.tokens[at - slot_tokens_.layers.begin()];
  for (int64_t s : slot_of) ++row[static_cast<size_t>(s)];
}

Status ExpertParallelDispatcher::dispatch(int64_t layer, const float* x, const Routing& routing,
                                          float* out) {
  if (!placement_.has_layer(layer)) {
    return internal_error("expert parallel: layer " + std::to_string(layer) +
                          " is not an MoE layer");
  }
  const int world = comm_->size();
  const int me = comm_->rank();
  const int64_t k = routing.top_k;
  const int64_t assignments = routing.tokens * k;
  const int64_t row_floats = kHeaderFloats + hidden_;
  const int64_t row_bytes = row_floats * static_cast<int64_t>(sizeof(float));
  const int64_t out_row_bytes = hidden_ * static_cast<int64_t>(sizeof(float));

  // 1. Destination slot of each assignment; pack the rows grouped by destination rank.
  std::vector<int64_t> slot_of(assignments);
  std::vector<int64_t> rows_to(world, 0);
  for (int64_t a = 0; a < assignments; ++a) {
    slot_of[a] = placement_.choose_slot(layer, routing.experts[a], me, a / k);
    ++rows_to[placement_.rank_of_slot(slot_of[a])];
  }
  count_slots(layer, slot_of);
  std::vector<int64_t> next(world, 0);
  for (int p = 1; p < world; ++p) next[p] = next[p - 1] + rows_to[p - 1];
  order_.resize(assignments);
  position_.resize(assignments);
  for (int64_t a = 0; a < assignments; ++a) {
    const int64_t pos = next[placement_.rank_of_slot(slot_of[a])]++;
    order_[pos] = a;
    position_[a] = pos;
  }
  send_.resize(assignments * row_floats);
  for (int64_t pos = 0; pos < assignments; ++pos) {
    const int64_t a = order_[pos];
    const int32_t local_slot = static_cast<int32_t>(
        slot_of[a] - placement_.first_slot(placement_.rank_of_slot(slot_of[a])));
    float* row = send_.data() + pos * row_floats;
    std::memcpy(row, &local_slot, sizeof(local_slot));
    std::copy_n(x + (a / k) * hidden_, hidden_, row + kHeaderFloats);
  }

  // 2. Dispatch.
  std::vector<int64_t> send_bytes(world);
  for (int p = 0; p < world; ++p) send_bytes[p] = rows_to[p] * row_bytes;
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> recv_bytes,
                            parallel::exchange_counts(*comm_, send_bytes));
  int64_t received = 0;
  for (int64_t b : recv_bytes) {
    if (b % row_bytes != 0) return internal_error("expert parallel: torn dispatch row");
    received += b / row_bytes;
  }
  recv_.resize(received * row_floats);
  MOESERVE_RETURN_IF_ERROR(comm_->all_to_all_v(send_.data(), send_bytes, recv_.data(), recv_bytes));

  // 3. Run this rank's experts over every received row.
  Routing local;
  local.tokens = received;
  local.top_k = 1;
  local.experts.resize(received);
  local.weights.assign(received, 1.0f);
  local_x_.resize(received * hidden_);
  for (int64_t r = 0; r < received; ++r) {
    const float* row = recv_.data() + r * row_floats;
    std::memcpy(&local.experts[r], row, sizeof(int32_t));
    if (local.experts[r] < 0 || local.experts[r] >= placement_.slots_per_rank()) {
      return internal_error("expert parallel: received a row for local slot " +
                            std::to_string(local.experts[r]));
    }
    std::copy_n(row + kHeaderFloats, hidden_, local_x_.data() + r * hidden_);
  }
  local_y_.resize(received * hidden_);
  MOESERVE_RETURN_IF_ERROR(local_->dispatch(layer, local_x_.data(), local, local_y_.data()));

  // 4. Combine: outputs go back to their source ranks, in the order they came.
  std::vector<int64_t> back_send(world), back_recv(world);
  for (int p = 0; p < world; ++p) {
    back_send[p] = recv_bytes[p] / row_bytes * out_row_bytes;
    back_recv[p] = rows_to[p] * out_row_bytes;
  }
  results_.resize(assignments * hidden_);
  MOESERVE_RETURN_IF_ERROR(
      comm_->all_to_all_v(local_y_.data(), back_send, results_.data(), back_recv));

  // 5. Weighted sum per token in ascending expert order.
  std::fill_n(out, routing.tokens * hidden_, 0.0f);
  std::vector<int64_t> mine(k);
  for (int64_t t = 0; t < routing.tokens; ++t) {
    std::iota(mine.begin(), mine.end(), t * k);
    std::sort(mine.begin(), mine.end(),
              [&](int64_t a, int64_t b) { return routing.experts[a] < routing.experts[b]; });
    for (int64_t a : mine) {
      kernels::scale_add(out + t * hidden_, results_.data() + position_[a] * hidden_,
                         routing.weights[a], hidden_);
    }
  }
  return ok_status();
}

Status ExpertParallelDispatcher::idle_layers(bool mtp) {
  Routing none;
  none.top_k = top_k_;
  for (int64_t layer : placement_.moe_layers()) {
    if ((layer >= num_main_layers_) != mtp) continue;
    MOESERVE_RETURN_IF_ERROR(dispatch(layer, nullptr, none, nullptr));
  }
  return ok_status();
}

StatusOr<ExpertParallelDispatcher*> attach_expert_parallel(Engine& engine,
                                                           parallel::Communicator& comm,
                                                           parallel::ExpertPlacement placement) {
  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<ExpertParallelDispatcher> dispatcher,
      ExpertParallelDispatcher::create(&comm, std::move(placement), engine.config(),
                                       engine.model().weights, &engine.pool()));
  ExpertParallelDispatcher* raw = dispatcher.get();
  engine.set_dispatcher(std::move(dispatcher));
  return raw;
}

}  // namespace moeserve::engine
