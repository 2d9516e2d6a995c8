// Resolving request paths inside the configured data roots.
//
// A relative path is taken relative to the first root; an absolute one must lie
// inside some root. The path is canonicalised (symbolic links resolved) and must
// stay inside a root after that, so neither `..` nor a symlink can leave the roots.
// Paths are checked as strings too: a `..` component is refused outright, even when
// it would land back inside a root, so requests say what they mean. A path outside
// the roots gets one message whether or not it exists, and where a symbolic link
// points is never told: the answers are no oracle for the coordinator's disk.
#ifndef QCAL_SERVER_CORE_PATH_POLICY_H_
#define QCAL_SERVER_CORE_PATH_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qcal::server {

class PathPolicy {
 public:
  // Roots are canonicalised; INVALID_ARGUMENT if none is given or one does not exist.
  static absl::StatusOr<PathPolicy> Create(const std::vector<std::string>& roots);

  // The canonical path of `path` (what `field` names in errors, e.g. "spec.model").
  // INVALID_ARGUMENT: empty or containing `..`; NOT_FOUND: does not exist;
  // PERMISSION_DENIED: resolves outside every root.
  absl::StatusOr<std::string> Resolve(const std::string& field, const std::string& path) const;

  // Resolve for a file qcal will open and read: it must also be a regular file
  // (INVALID_ARGUMENT saying what it is otherwise: a FIFO would block the reader,
  // a device would never end).
  absl::StatusOr<std::string> ResolveFile(const std::string& field, const std::string& path) const;
  // Resolve for a folder: INVALID_ARGUMENT when it is not a directory.
  absl::StatusOr<std::string> ResolveFolder(const std::string& field,
                                            const std::string& path) const;

  // Like Resolve for a path that need not exist yet (an output folder): its deepest
  // existing ancestor must resolve inside a root and be a folder (or the path itself).
  // Refused here, not on a worker after retries, because creating it could never
  // work: a component over 255 bytes or a path over 4,095 (INVALID_ARGUMENT naming
  // the limit), a symbolic link to nothing on the way (INVALID_ARGUMENT), a file
  // where a folder must be (INVALID_ARGUMENT).
  absl::StatusOr<std::string> ResolveForWrite(const std::string& field,
                                              const std::string& path) const;

  const std::vector<std::string>& roots() const { return roots_; }

 private:
  bool Inside(const std::string& canonical) const;
  static bool Under(const std::vector<std::string>& roots, const std::string& path);
  absl::Status Outside(const std::string& field, const std::string& path) const;
  // Resolve, then a folder or a regular file as asked.
  absl::StatusOr<std::string> ResolveOfKind(const std::string& field, const std::string& path,
                                            bool folder) const;
  std::vector<std::string> roots_;
  // roots_ and the roots as given (absolute, lexically normal) where they differ.
  std::vector<std::string> spelled_roots_;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_PATH_POLICY_H_
