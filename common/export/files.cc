// Durable file helpers of the exports (export_internal.h).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status SyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return Errno("open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("fsync", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileSynced(const std::string& path, const std::string& content) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
    f.close();
    if (!f) return absl::DataLossError(absl::StrCat("short write to ", path));
  }
  return SyncPath(path, false);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::Status CopyFileSynced(const std::string& src, const std::string& dst) {
  QCAL_ASSIGN_OR_RETURN(std::string content, ReadFile(src));
  return WriteFileSynced(dst, content);
}

absl::Status SyncTree(const std::string& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file()) {
      QCAL_RETURN_IF_ERROR(SyncPath(it->path().string(), false));
    } else if (it->is_directory()) {
      QCAL_RETURN_IF_ERROR(SyncPath(it->path().string(), true));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
  return SyncPath(dir, true);
}

absl::Status CopyTokenizerFiles(const std::string& model_dir, const std::string& out_dir) {
  for (const std::string& name : TokenizerFiles()) {
    const fs::path src = fs::path(model_dir) / name;
    std::error_code ec;
    if (!fs::is_regular_file(src, ec)) continue;
    QCAL_RETURN_IF_ERROR(CopyFileSynced(src.string(), (fs::path(out_dir) / name).string()));
  }
  return absl::OkStatus();
}


TensorToWrite ScalarF32(std::string name, float v) {
  return Float32Tensor(std::move(name), {}, &v);
}

TensorToWrite ScalarBool(std::string name, bool v) {
  TensorToWrite t;
  t.name = std::move(name);
  t.dtype = DType::kBool;
  t.bytes = std::string(1, v ? '\1' : '\0');
  return t;
}

TensorToWrite Int8Tensor(std::string name, std::vector<int64_t> shape,
                         const std::vector<int8_t>& q) {
  TensorToWrite t;
  t.name = std::move(name);
  t.dtype = DType::kI8;
  t.shape = std::move(shape);
  t.bytes.assign(reinterpret_cast<const char*>(q.data()), q.size());
  return t;
}

}  // namespace qcal::exporter::internal

namespace qcal::exporter {

namespace fs = std::filesystem;

absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir, int64_t* bytes) {
  std::vector<std::string> out;
  *bytes = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    out.push_back(fs::relative(it->path(), dir).string());
    *bytes += static_cast<int64_t>(it->file_size());
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace qcal::exporter
