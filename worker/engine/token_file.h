// Token files for `qcal-worker calibrate --tokens`: pre-tokenized samples.
//
// Formats:
//   jsonl  one JSON array of integer token ids per line = one sample (blank lines are
//          skipped);
//   u16    raw little-endian uint16 ids, one flat stream cut into windows of seq_len
//          tokens (the last, shorter window is kept);
//   u32    the same with uint32 ids.
// `auto` picks by extension: .jsonl/.json -> jsonl, .u16 -> u16, .u32/.bin -> u32.
// Errors name the file (and line for jsonl).
#ifndef QCAL_WORKER_ENGINE_TOKEN_FILE_H_
#define QCAL_WORKER_ENGINE_TOKEN_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qcal {

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadTokenFile(const std::string& path,
                                                                const std::string& format,
                                                                int64_t seq_len);

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_TOKEN_FILE_H_
