#include "server/store/write_checks.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace qcal::server {

absl::Status CheckBatchStructure(const WriteBatch& batch) {
  const auto& ops = batch.ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    const WriteBatch::Op& op = ops[i];
    if (!IsValidFamily(op.family)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "write batch op ", i, ": unknown family ", static_cast<int>(op.family)));
    }
    if (op.type == WriteBatch::OpType::kMerge && op.family != Family::kStats) {
      return absl::InvalidArgumentError(absl::StrCat("write batch op ", i, ": Merge on ",
                                                     DescribeKey(op.family, op.key),
                                                     " (only the stats family merges)"));
    }
  }
  return absl::OkStatus();
}

std::string DescribeKey(Family f, absl::string_view key) {
  constexpr size_t kMaxShown = 120;
  std::string shown = absl::CHexEscape(key.substr(0, kMaxShown));
  if (key.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat(FamilyName(f), " key '", shown, "'");
}

absl::Status AnnotateKey(Family f, absl::string_view key, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(DescribeKey(f, key), ": ", status.message()));
}

absl::Status CheckSameShape(Family f, absl::string_view key,
                            const LinearStatsShape& current,
                            const LinearStatsShape& operand) {
  if (current == operand) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(DescribeKey(f, key), ": merge operand for ", operand.DebugString(),
                   " does not match the stored ", current.DebugString()));
}

}  // namespace qcal::server
