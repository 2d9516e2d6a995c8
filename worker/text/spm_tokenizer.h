// Internal to qcal_text: the SentencePiece tokenizer of a tokenizer.model.
#ifndef QCAL_WORKER_TEXT_SPM_TOKENIZER_H_
#define QCAL_WORKER_TEXT_SPM_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/text/tokenizer.h"
#include "worker/text/tokenizer_config.h"

namespace qcal::text {

// Loads `model_path` (a serialized SentencePiece ModelProto) with the folder's
// tokenizer settings. Errors: NOT_FOUND, or INVALID_ARGUMENT naming the file when
// libsentencepiece rejects it.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(const std::string& model_path,
                                                              const TokenizerConfig& config);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_SPM_TOKENIZER_H_
