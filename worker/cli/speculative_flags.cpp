#include "worker/cli/speculative_flags.h"

#include <string>
#include <utility>

#include "worker/engine/drafter_factory.h"

namespace moeserve::cli {

void add_speculative_flags(FlagSet& flags, SpeculativeFlags* f) {
  flags.add_string("speculative", &f->method,
                   "speculative decoding: none, ngram (prompt lookup) or mtp (the checkpoint's "
                   "MTP module)",
                   "MOESERVE_SPECULATIVE");
  flags.add_int("num-draft-tokens", &f->num_draft_tokens,
                "draft tokens per sequence and step with --speculative, 1.." +
                    std::to_string(kMaxDraftTokens));
  flags.add_int("speculative-max-batch", &f->max_batch,
                "steps running more sequences than this do not draft (0: never)");
}

Status check_speculative_flags(const SpeculativeFlags& f) {
  if (Status s = engine::parse_speculative_method(f.method).status(); !s.ok()) {
    return invalid_argument_error("--speculative: " + s.message());
  }
  if (f.num_draft_tokens < 1 || f.num_draft_tokens > kMaxDraftTokens) {
    return invalid_argument_error("--num-draft-tokens must be in 1.." +
                                  std::to_string(kMaxDraftTokens) + ", got " +
                                  std::to_string(f.num_draft_tokens));
  }
  if (f.max_batch < 0) return invalid_argument_error("--speculative-max-batch must be >= 0");
  return ok_status();
}

bool needs_mtp_layers(const SpeculativeFlags& f) {
  StatusOr<engine::SpeculativeMethod> method = engine::parse_speculative_method(f.method);
  return method.ok() && *method == engine::SpeculativeMethod::kMtp;
}

Status configure_speculation(const SpeculativeFlags& f, engine::Engine& engine,
                             engine::SchedulerOptions* options,
                             std::function<Status()> before_draft_forward) {
  MOESERVE_ASSIGN_OR_RETURN(engine::SpeculativeMethod method,
                            engine::parse_speculative_method(f.method));
  MOESERVE_ASSIGN_OR_RETURN(options->drafter,
                            engine::make_drafter(method, engine, std::move(before_draft_forward)));
  options->num_draft_tokens = static_cast<int32_t>(f.num_draft_tokens);
  options->spec_max_batch = f.max_batch;
  return ok_status();
}

}  // namespace moeserve::cli
