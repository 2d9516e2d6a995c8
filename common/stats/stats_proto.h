// Conversion between the statistics and their compact protobuf form
// (proto/qcal/v1/stats.proto): packed per-channel arrays and a delta-encoded sketch
// of the non-empty buckets only.
//
// The *FromProto functions validate everything (lengths against channels, keys
// sorted, unique, finite and < 65536, counts > 0 and summing to count * channels,
// min <= max, extreme buckets matching min/max, unique non-empty names) and return
// INVALID_ARGUMENT naming the module and side on bad input: a corrupt report never
// crashes and never yields statistics that break later queries.
// Round trips are exact (bitwise).
#ifndef QCAL_COMMON_STATS_STATS_PROTO_H_
#define QCAL_COMMON_STATS_STATS_PROTO_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/key_sketch.h"
#include "common/stats/stats_set.h"
#include "common/stats/tensor_stats.h"
#include "proto/qcal/v1/stats.pb.h"

namespace qcal::stats {

void ToProto(const KeySketch& sketch, v1::KeySketchProto* out);
void ToProto(const TensorStats& stats, v1::TensorStatsProto* out);
void ToProto(const StatsSet& set, v1::StatsSetProto* out);

// `context` (e.g. "linear 'lm_head' input") prefixes error messages.
absl::StatusOr<KeySketch> KeySketchFromProto(const v1::KeySketchProto& proto,
                                             absl::string_view context);
absl::StatusOr<TensorStats> TensorStatsFromProto(const v1::TensorStatsProto& proto,
                                                 absl::string_view context);
absl::StatusOr<StatsSet> StatsSetFromProto(const v1::StatsSetProto& proto);

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_STATS_PROTO_H_
