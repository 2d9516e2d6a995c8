// Resolving request paths inside the configured data roots.
//
// A relative path is taken relative to the first root; an absolute one must lie
// inside some root. The path is canonicalised (symbolic links resolved) and must
// stay inside a root after that, so neither `..` nor a symlink can leave the roots.
// Paths are checked as strings too: a `..` component is refused outright, even when
// it would land back inside a root, so requests say what they mean.
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

  // Like Resolve for a path that need not exist yet (an output folder): its deepest
  // existing ancestor must resolve inside a root.
  absl::StatusOr<std::string> ResolveForWrite(const std::string& field,
                                              const std::string& path) const;

  const std::vector<std::string>& roots() const { return roots_; }

 private:
  bool Inside(const std::string& canonical) const;
  std::vector<std::string> roots_;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_PATH_POLICY_H_
