#include "worker/text/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "common/corpus/utf8.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/text/bpe_tokenizer.h"
#include "worker/text/spm_tokenizer.h"
#include "worker/text/tokenizer_config.h"

namespace qcal::text {

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       bool add_special_tokens) const {
  if (size_t bad = corpus::FindInvalidUtf8(text); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (at byte ", bad, ")"));
  }
  QCAL_ASSIGN_OR_RETURN(std::vector<int32_t> content, EncodeContent(text));
  if (!add_special_tokens || (prefix_.empty() && suffix_.empty())) return content;
  std::vector<int32_t> ids;
  ids.reserve(prefix_.size() + content.size() + suffix_.size());
  ids.insert(ids.end(), prefix_.begin(), prefix_.end());
  ids.insert(ids.end(), content.begin(), content.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  const std::string model_path = dir + "/tokenizer.model";
  const bool has_json = FileExists(json_path);
  const bool has_model = FileExists(model_path);
  if (!has_json && !has_model) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": holds neither tokenizer.json nor tokenizer.model"));
  }
  QCAL_ASSIGN_OR_RETURN(TokenizerConfig config, ReadTokenizerConfig(dir));
  if (has_json) {
    QCAL_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(json_path));
    nlohmann::json root = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded() || !root.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(json_path, ": not a JSON object"));
    }
    if (IsByteLevelBpe(root) || !has_model) {
      return CreateBpeTokenizer(root, config, json_path);
    }
    // A SentencePiece-style tokenizer.json (Metaspace, byte_fallback): the
    // tokenizer.model beside it gives the same ids.
  }
  return CreateSpmTokenizer(model_path, config);
}

}  // namespace qcal::text
