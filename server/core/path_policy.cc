#include "server/core/path_policy.h"

#include <limits.h>
#include <sys/stat.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/regular_file.h"
#include "common/status_macros.h"

namespace qcal::server {
namespace fs = std::filesystem;

absl::StatusOr<PathPolicy> PathPolicy::Create(const std::vector<std::string>& roots) {
  if (roots.empty()) return absl::InvalidArgumentError("at least one --data-root is required");
  PathPolicy p;
  for (const auto& r : roots) {
    std::error_code ec;
    fs::path c = fs::canonical(r, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("data root ", r, ": ", ec.message()));
    if (!fs::is_directory(c)) return absl::InvalidArgumentError(absl::StrCat("data root ", r, " is not a directory"));
    p.roots_.push_back(c.string());
    p.spelled_roots_.push_back(c.string());
    // A root given through a link (/data -> /mnt/data) is also inside as written.
    const std::string spelled = fs::absolute(r, ec).lexically_normal().string();
    if (!ec && spelled != c.string()) p.spelled_roots_.push_back(spelled);
  }
  return p;
}

bool PathPolicy::Inside(const std::string& canonical) const { return Under(roots_, canonical); }

bool PathPolicy::Under(const std::vector<std::string>& roots, const std::string& path) {
  for (std::string r : roots) {
    while (r.size() > 1 && r.back() == '/') r.pop_back();  // "/data/" as given
    if (path == r) return true;
    const std::string prefix = r == "/" ? r : r + "/";
    if (path.compare(0, prefix.size(), prefix) == 0) return true;
  }
  return false;
}

namespace {

absl::Status CheckSyntax(const std::string& field, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  }
  for (const auto& part : fs::path(path)) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", path, "\" contains \"..\"; give a path inside a data root"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PathPolicy::Outside(const std::string& field, const std::string& path) const {
  return absl::PermissionDeniedError(absl::StrCat(field, " \"", path,
                                                  "\" is outside the data roots (",
                                                  absl::StrJoin(roots_, ", "), ")"));
}

absl::StatusOr<std::string> PathPolicy::Resolve(const std::string& field,
                                                const std::string& path) const {
  if (auto st = CheckSyntax(field, path); !st.ok()) return st;
  fs::path p(path);
  if (p.is_relative()) p = fs::path(roots_.front()) / p;
  // Outside as written: refused before the disk is looked at, so existence shows
  // nowhere in the answer.
  if (!Under(spelled_roots_, p.lexically_normal().string())) return Outside(field, path);
  std::error_code ec;
  fs::path c = fs::canonical(p, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(field, " \"", path, "\" does not exist"));
  if (!Inside(c.string())) return Outside(field, path);  // through a link; target untold
  return c.string();
}

absl::StatusOr<std::string> PathPolicy::ResolveOfKind(const std::string& field,
                                                      const std::string& path, bool folder) const {
  QCAL_ASSIGN_OR_RETURN(std::string c, Resolve(field, path));
  struct stat st;
  if (::stat(c.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(field, " \"", path, "\" does not exist"));
  }
  if (folder ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", path, "\" is ",
                                                   FileKindName(st.st_mode),
                                                   folder ? ", not a folder" : ", not a regular file"));
  }
  return c;
}

absl::StatusOr<std::string> PathPolicy::ResolveFile(const std::string& field,
                                                    const std::string& path) const {
  return ResolveOfKind(field, path, /*folder=*/false);
}

absl::StatusOr<std::string> PathPolicy::ResolveFolder(const std::string& field,
                                                      const std::string& path) const {
  return ResolveOfKind(field, path, /*folder=*/true);
}

absl::StatusOr<std::string> PathPolicy::ResolveForWrite(const std::string& field,
                                                        const std::string& path) const {
  if (auto st = CheckSyntax(field, path); !st.ok()) return st;
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", path.size(),
                                                   " bytes; paths are limited to ", PATH_MAX - 1));
  }
  for (const auto& part : fs::path(path)) {
    if (part.native().size() > NAME_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " has a name of ", part.native().size(), " bytes; names are limited to ", NAME_MAX));
    }
  }
  fs::path p(path);
  if (p.is_relative()) p = fs::path(roots_.front()) / p;
  if (!Under(spelled_roots_, p.lexically_normal().string())) return Outside(field, path);
  // The deepest ancestor that is there at all: a link to nothing counts as there
  // (fs::exists would follow it and call it absent, and creating below it would fail).
  fs::path existing = p.lexically_normal();
  fs::path rest;
  std::error_code ec;
  while (!existing.empty() && !fs::exists(fs::symlink_status(existing, ec))) {
    rest = existing.filename() / rest;
    existing = existing.parent_path();
  }
  fs::path c = fs::canonical(existing.empty() ? fs::path("/") : existing, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", path, "\" is or lies below a symbolic link to nothing"));
  }
  if (!Inside(c.string())) return Outside(field, path);
  if (!rest.empty() && !fs::is_directory(c, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", path, "\" lies below a file, not a folder"));
  }
  return (c / rest).lexically_normal().string();
}

}  // namespace qcal::server
