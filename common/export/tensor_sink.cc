#include <cinttypes>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {

namespace fs = std::filesystem;

TensorSink::TensorSink(std::string dir, std::string base, int64_t max_shard_bytes)
    : dir_(std::move(dir)), base_(std::move(base)), max_shard_bytes_(max_shard_bytes) {}

std::string TensorSink::ShardTemp(size_t i) const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), ".shard-%05zu.tmp", i + 1);
  return (fs::path(dir_) / (base_ + buf)).string();
}

absl::Status TensorSink::Add(TensorToWrite t) {
  const int64_t bytes = static_cast<int64_t>(t.bytes.size());
  if (max_shard_bytes_ > 0 && !pending_.empty() && pending_bytes_ + bytes > max_shard_bytes_) {
    QCAL_RETURN_IF_ERROR(Flush());
  }
  pending_bytes_ += bytes;
  total_bytes_ += bytes;
  pending_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status TensorSink::Flush() {
  std::vector<std::string> names;
  for (const TensorToWrite& t : pending_) names.push_back(t.name);
  QCAL_RETURN_IF_ERROR(WriteSafetensors(ShardTemp(shards_.size()), pending_, {{"format", "pt"}}));
  shards_.push_back(std::move(names));
  pending_.clear();
  pending_bytes_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> TensorSink::Finish() {
  if (shards_.empty()) {
    const std::string file = base_ + ".safetensors";
    QCAL_RETURN_IF_ERROR(
        WriteSafetensors((fs::path(dir_) / file).string(), pending_, {{"format", "pt"}}));
    pending_.clear();
    return std::vector<std::string>{file};
  }
  if (!pending_.empty()) QCAL_RETURN_IF_ERROR(Flush());
  const size_t n = shards_.size();
  std::vector<std::string> files;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < n; ++i) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), "-%05zu-of-%05zu.safetensors", i + 1, n);
    const std::string file = base_ + buf;
    std::error_code ec;
    fs::rename(ShardTemp(i), fs::path(dir_) / file, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("renaming ", ShardTemp(i), ": ", ec.message()));
    }
    for (const std::string& name : shards_[i]) weight_map[name] = file;
    files.push_back(file);
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes_}};
  index["weight_map"] = std::move(weight_map);
  const std::string index_file = base_ + ".safetensors.index.json";
  QCAL_RETURN_IF_ERROR(
      WriteFileSynced((fs::path(dir_) / index_file).string(), index.dump(2) + "\n"));
  files.push_back(index_file);
  return files;
}

}  // namespace qcal::exporter::internal
