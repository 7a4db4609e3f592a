#include "worker/engine/batch_generate.h"

#include <string>
#include <utility>

#include "worker/engine/sampler.h"

namespace moeserve::engine {
namespace {

// Returns every sequence's blocks to the cache however generation ends.
class SequencesGuard {
 public:
  SequencesGuard(KvCache& cache, size_t n) : cache_(cache), seqs(n) {}
  ~SequencesGuard() {
    for (SequenceKv& s : seqs) cache_.release(s);
  }
  SequencesGuard(const SequencesGuard&) = delete;
  SequencesGuard& operator=(const SequencesGuard&) = delete;

 private:
  KvCache& cache_;

 public:
  std::vector<SequenceKv> seqs;
};

}  // namespace

StatusOr<std::vector<GenerateResult>> generate_batch(Engine& engine,
                                                     const std::vector<GenerateRequest>& requests,
                                                     GroupStepper* stepper) {
  std::vector<Sampler> samplers;
  for (size_t i = 0; i < requests.size(); ++i) {
    MOESERVE_RETURN_IF_ERROR(validate(requests[i].sampling));
    if (requests[i].prompt.empty()) {
      return invalid_argument_error("generate: request " + std::to_string(i) +
                                    " has an empty prompt");
    }
    samplers.emplace_back(requests[i].sampling);
  }
  SequencesGuard guard(engine.kv_cache(), requests.size());
  std::vector<GenerateResult> results(requests.size());
  std::vector<bool> done(requests.size(), false);
  ForwardOutput out;
  for (;;) {
    std::vector<size_t> active;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!done[i]) active.push_back(i);
    }
    if (stepper != nullptr) {
      MOESERVE_ASSIGN_OR_RETURN(bool any, stepper->any_work(static_cast<int64_t>(active.size())));
      if (!any) break;
      if (active.empty()) {
        MOESERVE_RETURN_IF_ERROR(stepper->idle_forward());
        continue;
      }
    } else if (active.empty()) {
      break;
    }

    std::vector<SequenceInput> batch;
    std::vector<bool> prefill;
    for (size_t i : active) {
      prefill.push_back(guard.seqs[i].length == 0);
      const std::span<const int32_t> tokens =
          prefill.back() ? std::span<const int32_t>(requests[i].prompt)
                         : std::span<const int32_t>(&results[i].tokens.back(), 1);
      batch.push_back(SequenceInput{&guard.seqs[i], tokens});
    }
    MOESERVE_RETURN_IF_ERROR(engine.forward(batch, &out));

    for (size_t j = 0; j < active.size(); ++j) {
      const size_t i = active[j];
      const GenerateRequest& request = requests[i];
      GenerateResult& result = results[i];
      if (prefill[j] && request.keep_prompt_logits) {
        result.prompt_logits.assign(out.row(j), out.row(j) + out.vocab_size);
      }
      if (request.max_tokens == 0) {
        done[i] = true;
        continue;
      }
      SampleResult sample = samplers[i].sample(out.row(j), static_cast<int32_t>(out.vocab_size));
      result.tokens.push_back(sample.token);
      result.stopped = sample.stop;
      result.samples.push_back(std::move(sample));
      done[i] = result.stopped || static_cast<int64_t>(result.tokens.size()) == request.max_tokens;
    }
  }
  return results;
}

}  // namespace moeserve::engine
