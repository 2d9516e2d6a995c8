// Writing a file so that a crash never leaves a partial file under its final name:
// the bytes go to a temporary file beside it (same folder, so the rename is atomic),
// which is flushed, fsynced and renamed into place. The one copy of this rule for
// every writer (statistics files, safetensors, client downloads, port files).
#ifndef QCAL_COMMON_ATOMIC_FILE_H_
#define QCAL_COMMON_ATOMIC_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace qcal {

// "<path>.tmp.<pid>": unique per process, in `path`'s folder.
std::string TemporaryPathFor(const std::string& path);

// Renames `temp` to `path`; on failure removes `temp` and returns INTERNAL naming both.
absl::Status RenameIntoPlace(const std::string& temp, const std::string& path);

// Writes `contents` to `path` atomically (see above). A file that cannot be created
// is PERMISSION_DENIED naming it, a failed write or fsync INTERNAL; the temporary
// file never stays behind.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

}  // namespace qcal

#endif  // QCAL_COMMON_ATOMIC_FILE_H_
