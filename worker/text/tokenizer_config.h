// Internal to qcal_text: what a model folder says about its tokenizer beyond
// tokenizer.json / tokenizer.model: tokenizer_config.json (special token names,
// add_bos_token / add_eos_token, legacy, added_tokens_decoder) and the special
// token ids of config.json / generation_config.json.
#ifndef QCAL_WORKER_TEXT_TOKENIZER_CONFIG_H_
#define QCAL_WORKER_TEXT_TOKENIZER_CONFIG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/text/added_tokens.h"

namespace qcal::text {

// A special token entry of tokenizer_config.json: absent, null, or a token text
// (written as a string or as an AddedToken object with "content").
struct SpecialTokenSetting {
  bool present = false;
  std::optional<std::string> content;  // nullopt: absent or null
};

struct TokenizerConfig {
  bool found = false;  // tokenizer_config.json exists
  std::string tokenizer_class;
  SpecialTokenSetting bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token, legacy;
  std::vector<AddedToken> added_tokens;  // added_tokens_decoder
  // From config.json, else generation_config.json (the first id of a list).
  std::optional<int32_t> bos_token_id, eos_token_id, pad_token_id;
};

// Reads `dir`/tokenizer_config.json, config.json and generation_config.json; each
// is optional. Errors: INVALID_ARGUMENT naming a file that is not valid JSON or has
// a field of the wrong type.
absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& dir);

// The id of a special token: the token named in tokenizer_config.json (looked up
// with `lookup`, which returns nullopt for unknown text) when the file mentions it
// (null meaning none), else `config_id` (config.json), else `fallback`.
std::optional<int32_t> ResolveSpecialToken(
    const SpecialTokenSetting& setting,
    const std::function<std::optional<int32_t>(const std::string&)>& lookup,
    std::optional<int32_t> config_id, std::optional<int32_t> fallback);

// Reads a whole file. Errors: NOT_FOUND / INTERNAL naming it.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
bool FileExists(const std::string& path);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_TOKENIZER_CONFIG_H_
