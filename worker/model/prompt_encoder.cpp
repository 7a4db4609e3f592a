#include "worker/model/prompt_encoder.h"

#include <filesystem>
#include <optional>
#include <utility>

namespace moeserve::model {
namespace {

// The BOS prefix tokenizer_config.json asks for (see the header).
StatusOr<std::vector<int32_t>> read_bos_prefix(const nlohmann::json& tokenizer_config,
                                               const std::string& path, const Tokenizer& tokenizer,
                                               const ModelConfig& config) {
  if (!tokenizer_config.value("add_bos_token", false)) return std::vector<int32_t>();
  MOESERVE_ASSIGN_OR_RETURN(const std::optional<std::string> bos,
                            read_special_token(tokenizer_config, "bos_token"));
  if (auto id = tokenizer.token_to_id(bos.value_or("")); id.has_value()) {
    return std::vector<int32_t>{*id};
  }
  if (config.bos_token_id >= 0) {
    return std::vector<int32_t>{static_cast<int32_t>(config.bos_token_id)};
  }
  return invalid_argument_error(path + ": add_bos_token is set but bos_token '" + bos.value_or("") +
                                "' is not in the tokenizer and config.json has no bos_token_id");
}

}  // namespace

StatusOr<PromptEncoder> PromptEncoder::load(const std::string& dir, const ModelConfig& config) {
  const std::string tokenizer_path = dir + "/tokenizer.json";
  if (!std::filesystem::exists(tokenizer_path)) {
    return failed_precondition_error(tokenizer_path + " is missing");
  }
  MOESERVE_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::load(tokenizer_path));
  const std::string config_path = dir + "/tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) {
    return PromptEncoder(std::move(tokenizer), {},
                         not_found_error(config_path + " is missing: no chat template"));
  }
  MOESERVE_ASSIGN_OR_RETURN(const nlohmann::json tokenizer_config,
                            read_tokenizer_config(config_path));
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int32_t> bos,
                            read_bos_prefix(tokenizer_config, config_path, tokenizer, config));
  StatusOr<ChatTemplate> chat = ChatTemplate::from_tokenizer_config(tokenizer_config);
  if (!chat.ok()) chat = chat.status().with_context(config_path);
  return PromptEncoder(std::move(tokenizer), std::move(bos), std::move(chat));
}

std::vector<int32_t> PromptEncoder::encode(std::string_view text) const {
  std::vector<int32_t> ids = bos_prefix_;
  const std::vector<int32_t> body = tokenizer_.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace moeserve::model
