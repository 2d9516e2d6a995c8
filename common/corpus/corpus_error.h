// Errors about corpus files name the file and the line.
//
// Every corpus error message reads "PATH:LINE: what" ("PATH: what" when no line
// applies) and the status carries the location as a payload, so callers (the
// coordinator's submit-time validation, the worker's reports) can show it or act on
// it without parsing the message.
//
// Thread-safe: pure functions.
#ifndef QCAL_COMMON_CORPUS_CORPUS_ERROR_H_
#define QCAL_COMMON_CORPUS_CORPUS_ERROR_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace qcal::corpus {

struct CorpusLocation {
  std::string path;
  int64_t line = 0;  // 1-based line of the (decompressed) file; 0: the whole file
};

// A status with `code`, the message "path:line: what" and the location payload.
absl::Status CorpusError(absl::StatusCode code, absl::string_view path, int64_t line,
                         absl::string_view what);

// The location attached by CorpusError, if `status` carries one.
std::optional<CorpusLocation> GetCorpusLocation(const absl::Status& status);

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_CORPUS_ERROR_H_
