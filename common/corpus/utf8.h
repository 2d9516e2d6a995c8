// Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing
// above U+10FFFF. Shared by the corpus readers and the tokenizers.
//
// Thread-safe: pure functions.
#ifndef QCAL_COMMON_CORPUS_UTF8_H_
#define QCAL_COMMON_CORPUS_UTF8_H_

#include <cstddef>
#include "absl/strings/string_view.h"

namespace qcal::corpus {

// Byte offset of the first byte of the first invalid sequence in `s`, or
// absl::string_view::npos when all of `s` is valid UTF-8.
size_t FindInvalidUtf8(absl::string_view s);

inline bool IsValidUtf8(absl::string_view s) {
  return FindInvalidUtf8(s) == absl::string_view::npos;
}

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_UTF8_H_
