// Internal to qcal_text: the byte-level BPE tokenizer of a tokenizer.json.
#ifndef QCAL_WORKER_TEXT_BPE_TOKENIZER_H_
#define QCAL_WORKER_TEXT_BPE_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/text/tokenizer.h"
#include "worker/text/tokenizer_config.h"

namespace qcal::text {

// True if `tokenizer_json` has a BPE model with a ByteLevel pre-tokenizer or
// decoder (what CreateBpeTokenizer handles); false for e.g. SentencePiece-converted
// files (Metaspace, byte_fallback).
bool IsByteLevelBpe(const nlohmann::json& tokenizer_json);

// Builds the tokenizer. `path` names the file in error messages.
// Errors: INVALID_ARGUMENT for a malformed file, UNIMPLEMENTED for a component
// outside the supported list (see tokenizer.h), naming it.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(
    const nlohmann::json& tokenizer_json, const TokenizerConfig& config,
    const std::string& path);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_BPE_TOKENIZER_H_
