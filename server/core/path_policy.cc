#include "server/core/path_policy.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
  }
  return p;
}

bool PathPolicy::Inside(const std::string& canonical) const {
  for (const auto& r : roots_) {
    if (canonical == r) return true;
    const std::string prefix = r == "/" ? r : r + "/";
    if (canonical.compare(0, prefix.size(), prefix) == 0) return true;
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

absl::StatusOr<std::string> PathPolicy::Resolve(const std::string& field,
                                                const std::string& path) const {
  if (auto st = CheckSyntax(field, path); !st.ok()) return st;
  fs::path p(path);
  if (p.is_relative()) p = fs::path(roots_.front()) / p;
  std::error_code ec;
  fs::path c = fs::canonical(p, ec);
  if (ec) {
    // Whether it exists or not, say nothing about paths outside the roots.
    fs::path lexical = p.lexically_normal();
    if (!Inside(lexical.string())) {
      return absl::PermissionDeniedError(absl::StrCat(field, " \"", path,
                                                      "\" is outside the data roots (",
                                                      absl::StrJoin(roots_, ", "), ")"));
    }
    return absl::NotFoundError(absl::StrCat(field, " \"", path, "\" does not exist"));
  }
  if (!Inside(c.string())) {
    return absl::PermissionDeniedError(absl::StrCat(
        field, " \"", path, "\" resolves to ", c.string(), ", outside the data roots (",
        absl::StrJoin(roots_, ", "), ")"));
  }
  return c.string();
}

absl::StatusOr<std::string> PathPolicy::ResolveForWrite(const std::string& field,
                                                        const std::string& path) const {
  if (auto st = CheckSyntax(field, path); !st.ok()) return st;
  fs::path p(path);
  if (p.is_relative()) p = fs::path(roots_.front()) / p;
  fs::path existing = p;
  fs::path rest;
  std::error_code ec;
  while (!existing.empty() && !fs::exists(existing, ec)) {
    rest = existing.filename() / rest;
    existing = existing.parent_path();
  }
  fs::path c = fs::canonical(existing.empty() ? fs::path("/") : existing, ec);
  if (ec || !Inside(c.string())) {
    return absl::PermissionDeniedError(absl::StrCat(field, " \"", path,
                                                    "\" is outside the data roots (",
                                                    absl::StrJoin(roots_, ", "), ")"));
  }
  return (c / rest).lexically_normal().string();
}

}  // namespace qcal::server
