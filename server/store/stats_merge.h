// The merge of serialized qcal.v1.LinearStatsProto values (the kStats family's merge
// operation) and the checks every Store applies to kStats values on Write.
//
// MergeLinearStats itself is declared in store.h; this header adds the copy-free
// variant the RocksDB merge operator uses and the shape check. All functions are
// pure and thread-safe, and never crash on arbitrary bytes: corrupt input gives
// INVALID_ARGUMENT naming what is wrong.
#ifndef QCAL_SERVER_STORE_STATS_MERGE_H_
#define QCAL_SERVER_STORE_STATS_MERGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qcal::server {

// What must agree between two LinearStatsProto values for them to merge.
struct LinearStatsShape {
  std::string name;
  int64_t in_channels = 0;
  int64_t out_channels = 0;

  bool operator==(const LinearStatsShape& o) const {
    return name == o.name && in_channels == o.in_channels &&
           out_channels == o.out_channels;
  }
  bool operator!=(const LinearStatsShape& o) const { return !(*this == o); }
  // "linear 'lm_head' (4096 -> 32000 channels)"
  std::string DebugString() const;
};

// Fully validates one serialized LinearStatsProto (parse, non-empty name, both
// sides through TensorStatsFromProto) and returns its shape. INVALID_ARGUMENT
// otherwise.
absl::StatusOr<LinearStatsShape> ValidateLinearStats(absl::string_view value);

// MergeLinearStats on views: `existing` (may be null) then `operands` in order.
// With exactly one value in all it is validated and returned unchanged; otherwise
// the result is the canonical serialization of the merged statistics.
// INVALID_ARGUMENT when there is no value at all, a value is corrupt, or names or
// channel counts differ.
absl::StatusOr<std::string> MergeLinearStatsViews(
    const absl::string_view* existing, const std::vector<absl::string_view>& operands);

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_STATS_MERGE_H_
