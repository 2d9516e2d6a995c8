#include "server/store/in_memory_store.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/store/stats_merge.h"
#include "server/store/write_checks.h"

namespace qcal::server {

InMemoryStore::InMemoryStore() {
  absl::MutexLock lock(&mu_);
  maps_[static_cast<size_t>(Family::kMeta)][kSchemaVersionKey] =
      std::to_string(kSchemaVersion);
}

absl::StatusOr<std::optional<std::string>> InMemoryStore::Get(Family f,
                                                              const std::string& key) {
  if (!IsValidFamily(f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("get: unknown family ", static_cast<int>(f)));
  }
  absl::MutexLock lock(&mu_);
  const Map& map = maps_[static_cast<size_t>(f)];
  auto it = map.find(key);
  if (it == map.end()) return std::nullopt;
  return it->second;
}

absl::Status InMemoryStore::Write(const WriteBatch& batch) {
  QCAL_RETURN_IF_ERROR(CheckBatchStructure(batch));
  absl::MutexLock lock(&mu_);
  // The batch's effect, computed completely before anything is applied:
  // (family, key) -> new value, or nullopt for deleted.
  std::map<std::pair<Family, std::string>, std::optional<std::string>> staged;
  for (const WriteBatch::Op& op : batch.ops()) {
    const auto slot = std::make_pair(op.family, op.key);
    switch (op.type) {
      case WriteBatch::OpType::kDelete:
        staged[slot] = std::nullopt;
        break;
      case WriteBatch::OpType::kPut:
        if (op.family == Family::kStats) {
          absl::Status valid = ValidateLinearStats(op.value).status();
          if (!valid.ok()) return AnnotateKey(op.family, op.key, valid);
        }
        staged[slot] = op.value;
        break;
      case WriteBatch::OpType::kMerge: {
        const std::string* current = nullptr;
        if (auto it = staged.find(slot); it != staged.end()) {
          if (it->second.has_value()) current = &*it->second;
        } else {
          const Map& map = maps_[static_cast<size_t>(op.family)];
          if (auto found = map.find(op.key); found != map.end()) current = &found->second;
        }
        // Like RocksDbStore (same checks, same messages): the operand on its own,
        // then its shape against the current value's.
        if (current != nullptr) {
          absl::StatusOr<LinearStatsShape> operand = ValidateLinearStats(op.value);
          if (!operand.ok()) return AnnotateKey(op.family, op.key, operand.status());
          absl::StatusOr<LinearStatsShape> stored = ValidateLinearStats(*current);
          if (!stored.ok()) return AnnotateKey(op.family, op.key, stored.status());
          QCAL_RETURN_IF_ERROR(CheckSameShape(op.family, op.key, *stored, *operand));
        }
        absl::StatusOr<std::string> merged = MergeLinearStats(current, {op.value});
        if (!merged.ok()) return AnnotateKey(op.family, op.key, merged.status());
        staged[slot] = *std::move(merged);
        break;
      }
    }
  }
  for (auto& [slot, value] : staged) {
    Map& map = maps_[static_cast<size_t>(slot.first)];
    if (value.has_value()) {
      map[slot.second] = *std::move(value);
    } else {
      map.erase(slot.second);
    }
  }
  return absl::OkStatus();
}

absl::Status InMemoryStore::Scan(
    Family f, const std::string& prefix,
    const std::function<bool(const std::string& key, const std::string& value)>& fn) {
  if (!IsValidFamily(f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scan: unknown family ", static_cast<int>(f)));
  }
  std::vector<std::pair<std::string, std::string>> entries;
  {
    absl::MutexLock lock(&mu_);
    const Map& map = maps_[static_cast<size_t>(f)];
    for (auto it = map.lower_bound(prefix);
         it != map.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      entries.emplace_back(it->first, it->second);
    }
  }
  for (const auto& [key, value] : entries) {
    if (!fn(key, value)) break;
  }
  return absl::OkStatus();
}

}  // namespace qcal::server
