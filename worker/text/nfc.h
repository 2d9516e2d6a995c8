// Internal to qcal_text: Unicode NFC normalization (ICU's Normalizer2).
#ifndef QCAL_WORKER_TEXT_NFC_H_
#define QCAL_WORKER_TEXT_NFC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qcal::text {

// NFC form of `text` (valid UTF-8). Text that is already NFC (all ASCII text is)
// is returned unchanged without conversion. Thread-safe.
// Errors: INTERNAL if ICU fails.
absl::StatusOr<std::string> NormalizeNfc(absl::string_view text);

// True if NormalizeNfc(text) == text; cheap for ASCII.
bool IsNfc(absl::string_view text);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_NFC_H_
