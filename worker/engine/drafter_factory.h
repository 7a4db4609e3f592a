// The one place where a speculative-decoding method name (`--speculative`, the CRD's
// spec.speculative.method) becomes a Drafter for the Scheduler.
//
//   none   no drafter: plain decoding
//   ngram  NgramDrafter (prompt lookup over each request's own tokens)
//   mtp    MtpDrafter over the checkpoint's multi-token-prediction module; refused
//          (failed_precondition) when the engine has none (num_nextn_predict_layers 0,
//          or the model was loaded without BindOptions::load_mtp)
//
// Pure apart from constructing the drafter; not thread-safe (call it at start-up).
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "common/status.h"
#include "worker/engine/drafter.h"
#include "worker/engine/engine.h"

namespace moeserve::engine {

enum class SpeculativeMethod { kNone, kNgram, kMtp };

// invalid_argument naming the accepted values for anything else.
StatusOr<SpeculativeMethod> parse_speculative_method(std::string_view name);
std::string_view speculative_method_name(SpeculativeMethod method);  // "none" | "ngram" | "mtp"

// The drafter `method` names for the model `engine` runs (null for kNone).
// `before_draft_forward`, when set, runs before every forward a drafter runs on the
// engine (mtp; rank 0 of an expert-parallel group broadcasts kMtpForward there).
StatusOr<std::shared_ptr<Drafter>> make_drafter(SpeculativeMethod method, Engine& engine,
                                                std::function<Status()> before_draft_forward = {});

}  // namespace moeserve::engine
