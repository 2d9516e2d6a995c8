// Internal to qcal_text: Hugging Face's Split pre-tokenizer (behavior "Isolated")
// with PCRE2 (UTF + UCP, JIT-compiled) standing in for Oniguruma.
//
// The pattern is translated so that PCRE2 agrees with Oniguruma on the classes
// tokenizer regexes use: \s and \S follow Unicode White_Space (PCRE2's UCP \s
// lacks U+0085 NEXT LINE), \p{L} / \p{N} / (?i:...) / lookahead carry over as is.
//
// Thread-safe: Split may be called concurrently.
#ifndef QCAL_WORKER_TEXT_REGEX_SPLIT_H_
#define QCAL_WORKER_TEXT_REGEX_SPLIT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qcal::text {

class RegexSplitter {
 public:
  // Errors: INVALID_ARGUMENT naming the pattern and PCRE2's message.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(const std::string& pattern);
  ~RegexSplitter();

  // Appends to `pieces` the matches of the pattern in `text` (valid UTF-8) and the
  // non-empty gaps between them, in order; together they cover `text`.
  // Errors: INTERNAL if PCRE2 fails (e.g. its match limit).
  absl::Status Split(absl::string_view text, std::vector<absl::string_view>* pieces) const;

  // The pattern as handed to PCRE2 (after translation); for tests.
  const std::string& translated() const { return translated_; }

  // The translation alone.
  static std::string TranslatePattern(absl::string_view pattern);

 private:
  struct Impl;
  explicit RegexSplitter(std::unique_ptr<Impl> impl, std::string translated);
  std::unique_ptr<Impl> impl_;
  std::string translated_;
};

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_REGEX_SPLIT_H_
