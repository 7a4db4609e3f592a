#include "worker/engine/drafter_factory.h"

#include <string>
#include <utility>

#include "worker/engine/mtp_drafter.h"
#include "worker/engine/ngram_drafter.h"

namespace moeserve::engine {

StatusOr<SpeculativeMethod> parse_speculative_method(std::string_view name) {
  if (name == "none") return SpeculativeMethod::kNone;
  if (name == "ngram") return SpeculativeMethod::kNgram;
  if (name == "mtp") return SpeculativeMethod::kMtp;
  return invalid_argument_error("speculative decoding must be mtp, ngram or none, not '" +
                                std::string(name) + "'");
}

std::string_view speculative_method_name(SpeculativeMethod method) {
  switch (method) {
    case SpeculativeMethod::kNone: return "none";
    case SpeculativeMethod::kNgram: return "ngram";
    case SpeculativeMethod::kMtp: return "mtp";
  }
  return "none";
}

StatusOr<std::shared_ptr<Drafter>> make_drafter(SpeculativeMethod method, Engine& engine,
                                                std::function<Status()> before_draft_forward) {
  switch (method) {
    case SpeculativeMethod::kNone: return std::shared_ptr<Drafter>();
    case SpeculativeMethod::kNgram:
      return std::shared_ptr<Drafter>(std::make_shared<NgramDrafter>());
    case SpeculativeMethod::kMtp: {
      MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<MtpDrafter> mtp,
                                MtpDrafter::create(&engine, std::move(before_draft_forward)));
      return std::shared_ptr<Drafter>(std::move(mtp));
    }
  }
  return invalid_argument_error("unknown speculative decoding method");
}

}  // namespace moeserve::engine
