// DeepSeekMoE: routing of tokens to experts, and the dispatch of routed tokens to the
// experts that run them.
//
// Routing (route) is pure. Scores are sigmoid (V3) or softmax (V2) of the router
// logits. Selection:
//   - kNoauxTc (V3): on scores + e_score_correction_bias; with n_group > 1 each group is
//     scored by the sum of its two best biased scores, the topk_group best groups are
//     kept, and the top-k experts are taken among them.
//   - kGroupLimitedGreedy (V2): the same on the plain scores, groups scored by their best.
//   - kGreedy: top-k over all experts.
// Ties go to the lower expert (or group) id. Weights are the plain (unbiased) scores of
// the chosen experts, normalised to sum 1 when norm_topk_prob (and k > 1); V3 then always
// multiplies by routed_scaling_factor, V2 only when it did not normalise (as the
// Hugging Face implementations of each do).
//
// Dispatch is a seam: ExpertDispatcher takes the routed assignment and returns the
// weighted sum of the experts' outputs per token. LocalExpertDispatcher runs the experts
// held in this process, grouping tokens by expert so that each expert's weights are
// read once per batch; the expert-parallel path replaces it with an all-to-all to other
// ranks. Shared experts are not part of dispatch (the caller adds them).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/matmul.h"
#include "worker/model/config.h"

namespace moeserve::kernels {
class ThreadPool;
}

namespace moeserve::engine {

struct RoutingConfig {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  model::TopkMethod method = model::TopkMethod::kGreedy;
  model::ScoringFunc scoring = model::ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  bool always_scale = false;  // V3: scale after normalising; V2: scale only unnormalised
};

RoutingConfig routing_config(const model::ModelConfig& config);

// The experts chosen for each of `tokens` tokens: experts[t * top_k + i] with weight
// weights[t * top_k + i], in selection order (best first).
struct Routing {
  int64_t tokens = 0;
  int64_t top_k = 0;
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

// router_logits: [tokens, num_experts]; bias: num_experts floats or null.
Routing route(const RoutingConfig& config, const float* router_logits, const float* bias,
              int64_t tokens);

// The SwiGLU MLP of one expert (or of a dense layer / the fused shared experts):
// down(silu(gate(x)) * up(x)).
struct MlpWeights {
  kernels::WeightView gate;
  kernels::WeightView up;
  kernels::WeightView down;
};

// Scratch-owning runner of SwiGLU MLPs over a group of tokens.
class MlpRunner {
 public:
  // out[t] = mlp(x[t]) for t < tokens; x and out are [tokens, hidden].
  void run(const MlpWeights& mlp, const float* x, int64_t tokens, float* out,
           kernels::ThreadPool* pool);
  // run in two halves, so that the gate and up projections can share a matmul_all with
  // other matmuls of the same input (a MoE layer's router): project appends them to
  // `tasks` (their outputs are this runner's scratch, valid until its next call), and once
  // they have run, finish applies SwiGLU and the down projection into out.
  void project(const MlpWeights& mlp, const float* x, int64_t tokens,
               std::vector<kernels::MatmulTask>& tasks);
  void finish(const MlpWeights& mlp, int64_t tokens, float* out, kernels::ThreadPool* pool);

 private:
  std::vector<float> gate_;
  std::vector<float> up_;
  std::vector<kernels::MatmulTask> tasks_;
};

class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  // out[t] = sum_i weights[t,i] * expert_{experts[t,i]}(x[t]); x and out are
  // [routing.tokens, hidden]. `layer` is the decoder layer index.
  virtual Status dispatch(int64_t layer, const float* x, const Routing& routing, float* out) = 0;
};

// Runs experts held in this process: experts_by_layer[layer][expert] (layers without
// MoE have an empty list).
class LocalExpertDispatcher : public ExpertDispatcher {
 public:
  LocalExpertDispatcher(std::vector<std::vector<MlpWeights>> experts_by_layer, int64_t hidden,
                        kernels::ThreadPool* pool);
  Status dispatch(int64_t layer, const float* x, const Routing& routing, float* out) override;
  // The views it multiplies by, [layer][local expert].
  const std::vector<std::vector<MlpWeights>>& experts() const { return experts_; }

 private:
  // Copies the tokens of positions [begin, end) (slots[j] / top_k is position j's token)
  // into those rows of gathered_, and returns the first. Distinct ranges may be gathered
  // from different threads.
  const float* gather(const float* x, int64_t begin, int64_t end, const std::vector<int64_t>& slots,
                      int64_t top_k);
  // Runs the `active` experts on their gathered tokens (positions [start[e], start[e + 1])
  // of slots) as two matmul_all dispatches: every gate and up, then every down.
  void run_rows_split(const std::vector<MlpWeights>& experts, const std::vector<int64_t>& active,
                      const std::vector<int64_t>& start, const std::vector<int64_t>& slots,
                      const float* x, int64_t top_k);

  std::vector<std::vector<MlpWeights>> experts_;
  int64_t hidden_;
  kernels::ThreadPool* pool_;
  MlpRunner runner_;
  std::vector<float> gathered_;
  std::vector<float> result_;
  std::vector<float> gate_, up_;  // run_rows_split's intermediate rows
};

}  // namespace moeserve::engine
