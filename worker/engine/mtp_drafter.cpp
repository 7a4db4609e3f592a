#include "worker/engine/mtp_drafter.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace moeserve::engine {

StatusOr<std::unique_ptr<MtpDrafter>> MtpDrafter::create(Engine* engine,
                                                         std::function<Status()> before_forward) {
  if (!engine->has_mtp()) {
    return failed_precondition_error(
        engine->config().num_nextn_predict_layers == 0
            ? "--speculative mtp: the checkpoint has no MTP module (num_nextn_predict_layers "
              "is 0 in config.json); use --speculative ngram or none"
            : "--speculative mtp: the model was loaded without its MTP layers");
  }
  return std::unique_ptr<MtpDrafter>(new MtpDrafter(engine, std::move(before_forward)));
}

MtpDrafter::MtpDrafter(Engine* engine, std::function<Status()> before_forward)
    : engine_(engine), before_forward_(std::move(before_forward)) {}

MtpDrafter::~MtpDrafter() {
  for (auto& [id, state] : states_) engine_->mtp_kv_cache().release(state.kv);
}

void MtpDrafter::release(uint64_t sequence) {
  auto it = states_.find(sequence);
  if (it == states_.end()) return;
  engine_->mtp_kv_cache().release(it->second.kv);
  states_.erase(it);
}

void MtpDrafter::drop(State& state) {
  engine_->mtp_kv_cache().release(state.kv);
  state.waiting.clear();
  state.off = true;
}

Status MtpDrafter::run(const std::vector<MtpInput>& batch, ForwardOutput* output) {
  if (before_forward_) MOESERVE_RETURN_IF_ERROR(before_forward_());
  return engine_->mtp_forward(batch, output);
}

Status MtpDrafter::draft_from(const float* logits, const DraftInput& input, Draft* draft) {
  const int32_t vocab = static_cast<int32_t>(engine_->config().vocab_size);
  if (input.sampling == nullptr || input.sampling->temperature <= 0.0) {
    draft->tokens.push_back(argmax(logits, vocab));
    return ok_status();
  }
  if (input.rng == nullptr) {
    return invalid_argument_error("MTP drafter: sequence " + std::to_string(input.sequence) +
                                  ": temperature > 0 without an Rng");
  }
  std::vector<float> q;
  sampling_distribution(logits, vocab, *input.sampling, TokenHistory{}, &q);
  const int32_t token = sample_from(q, *input.rng);
  if (token < 0) {
    return internal_error("MTP drafter: sequence " + std::to_string(input.sequence) +
                          ": the draft distribution is empty");
  }
  draft->tokens.push_back(token);
  draft->probs.push_back(std::move(q));
  return ok_status();
}

Status MtpDrafter::step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) {
  const int64_t hidden = engine_->config().hidden_size;
  drafts->assign(inputs.size(), Draft{});

  // Catch-up rows of every input, one batch, run when someone drafts or waits too long.
  std::vector<MtpInput> batch;
  bool run_now = false;
  std::vector<size_t> batch_input;  // the input of each batch entry
  std::vector<State*> batch_state;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DraftInput& in = inputs[i];
    auto [it, inserted] = states_.try_emplace(in.sequence);
    State& s = it->second;
    // A prefix the main model computed without this sequence: its MTP positions run on
    // their tokens alone (zero hidden states, which hnorm keeps zero).
    if (inserted) s.waiting.assign(in.hidden_from * hidden, 0.0f);
    if (s.off) continue;
    // The chained positions of the last step were speculative.
    if (s.kv.length > s.done) engine_->mtp_kv_cache().truncate(s.kv, s.done);
    const int64_t known = s.done + static_cast<int64_t>(s.waiting.size()) / hidden;
    const int64_t fresh = in.committed - in.hidden_from;
    if (fresh > 0) {
      if (in.hidden == nullptr) {
        return invalid_argument_error("MTP drafter: sequence " + std::to_string(in.sequence) +
                                      ": committed positions without hidden states");
      }
      if (in.hidden_from != known) {
        return invalid_argument_error("MTP drafter: sequence " + std::to_string(in.sequence) +
                                      ": hidden states start at position " +
                                      std::to_string(in.hidden_from) +
                                      ", but the drafter has them up to " + std::to_string(known));
      }
      s.waiting.insert(s.waiting.end(), in.hidden, in.hidden + fresh * hidden);
    }
    const int64_t rows = static_cast<int64_t>(s.waiting.size()) / hidden;
    // Position j runs once t_{j+1} is known.
    const int64_t runnable =
        std::clamp<int64_t>(static_cast<int64_t>(in.tokens.size()) - 1 - s.done, 0, rows);
    if (runnable == 0) continue;
    const bool drafting = in.max_draft > 0 && s.done + runnable == in.committed;
    run_now = run_now || drafting || runnable >= kMaxWaitingRows;
    batch.push_back(MtpInput{.kv = &s.kv,
                             .tokens = in.tokens.subspan(s.done + 1, runnable),
                             .hidden = s.waiting.data(),
                             .logits = drafting,
                             .hidden_states = drafting && in.max_draft > 1});
    batch_input.push_back(i);
    batch_state.push_back(&s);
  }
  if (!run_now) return ok_status();

  const Status ran = run(batch, &output_);
  if (ran.code() == StatusCode::kResourceExhausted) {
    for (State* s : batch_state) drop(*s);
    return ok_status();
  }
  MOESERVE_RETURN_IF_ERROR(ran);

  // Draft 1 from each caught-up sequence's last row; its h' seeds the chain.
  std::vector<size_t> chain_input;
  std::vector<State*> chain_state;
  chain_tokens_.clear();
  chain_hidden_.clear();
  for (size_t b = 0; b < batch.size(); ++b) {
    const DraftInput& in = inputs[batch_input[b]];
    State& s = *batch_state[b];
    const int64_t ran_rows = static_cast<int64_t>(batch[b].tokens.size());
    s.done += ran_rows;
    s.waiting.erase(s.waiting.begin(), s.waiting.begin() + ran_rows * hidden);
    if (in.max_draft <= 0 || s.done != in.committed) continue;
    Draft& draft = (*drafts)[batch_input[b]];
    MOESERVE_RETURN_IF_ERROR(draft_from(output_.row(b), in, &draft));
    if (in.max_draft > 1) {
      chain_input.push_back(batch_input[b]);
      chain_state.push_back(&s);
      chain_tokens_.push_back(draft.tokens.back());
      const float* h = output_.hidden_row(b, ran_rows - 1);
      chain_hidden_.insert(chain_hidden_.end(), h, h + hidden);
    }
  }

  // Drafts 2..max_draft: one position per sequence per depth, on the module's own output.
  for (int32_t depth = 2; !chain_input.empty(); ++depth) {
    batch.clear();
    for (size_t c = 0; c < chain_input.size(); ++c) {
      batch.push_back(MtpInput{.kv = &chain_state[c]->kv,
                               .tokens = std::span<const int32_t>(&chain_tokens_[c], 1),
                               .hidden = chain_hidden_.data() + c * hidden,
                               .hidden_states = inputs[chain_input[c]].max_draft > depth});
    }
    const Status chained = run(batch, &output_);
    if (chained.code() == StatusCode::kResourceExhausted) break;
    MOESERVE_RETURN_IF_ERROR(chained);
    std::vector<size_t> next_input;
    std::vector<State*> next_state;
    std::vector<int32_t> next_tokens;
    std::vector<float> next_hidden;
    for (size_t c = 0; c < chain_input.size(); ++c) {
      const DraftInput& in = inputs[chain_input[c]];
      Draft& draft = (*drafts)[chain_input[c]];
      MOESERVE_RETURN_IF_ERROR(draft_from(output_.row(c), in, &draft));
      if (in.max_draft > depth) {
        next_input.push_back(chain_input[c]);
        next_state.push_back(chain_state[c]);
        next_tokens.push_back(draft.tokens.back());
        const float* h = output_.hidden_row(c, 0);
        next_hidden.insert(next_hidden.end(), h, h + hidden);
      }
    }
    chain_input = std::move(next_input);
    chain_state = std::move(next_state);
    chain_tokens_ = std::move(next_tokens);
    chain_hidden_ = std::move(next_hidden);
  }
  return ok_status();
}

}  // namespace moeserve::engine
