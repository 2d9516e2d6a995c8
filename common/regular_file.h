// Input files are opened only when they are regular files. A FIFO, socket or device
// named as a model or corpus file would block the opening thread (opening a FIFO
// waits for a writer) or never end, and a directory is no input; every reader of
// model folders and corpora (coordinator validation and the worker alike) opens
// through here.
#ifndef QCAL_COMMON_REGULAR_FILE_H_
#define QCAL_COMMON_REGULAR_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qcal {

// "a FIFO", "a directory", "a socket", "a character device", ... for messages.
std::string FileKindName(mode_t mode);

// Opens `path` read-only without blocking (O_NONBLOCK, so a FIFO's open returns at
// once), checks with fstat that it is a regular file, then clears O_NONBLOCK for
// ordinary reads. Returns the descriptor; the caller closes it. Error messages are
// "<path>: <what>" (e.g. "corpus/in: is a FIFO, not a regular file"): NOT_FOUND (missing), PERMISSION_DENIED (not readable), INVALID_ARGUMENT (not
// a regular file, saying what it is), INTERNAL otherwise.
absl::StatusOr<int> OpenRegularFile(const std::string& path);

// The whole content of a regular file (see OpenRegularFile) of at most `max_bytes`;
// INVALID_ARGUMENT naming the limit when larger.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes);

}  // namespace qcal

#endif  // QCAL_COMMON_REGULAR_FILE_H_
