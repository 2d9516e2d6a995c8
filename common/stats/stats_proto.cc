#include "common/stats/stats_proto.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace qcal::stats {
namespace {

absl::Status Annotate(absl::string_view context, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace

void ToProto(const KeySketch& sketch, v1::KeySketchProto* out) {
  out->Clear();
  out->set_format(v1::SKETCH_FORMAT_F32_TOP16);
  out->mutable_key_deltas()->Reserve(static_cast<int>(sketch.keys().size()));
  out->mutable_counts()->Reserve(static_cast<int>(sketch.counts().size()));
  uint32_t previous = 0;
  for (uint16_t key : sketch.keys()) {
    out->add_key_deltas(key - previous);
    previous = key;
  }
  for (uint64_t count : sketch.counts()) out->add_counts(count);
}

void ToProto(const TensorStats& stats, v1::TensorStatsProto* out) {
  out->Clear();
  out->set_channels(stats.channels());
  out->set_count(stats.count());
  if (!stats.empty()) {
    out->mutable_min()->Add(stats.min().begin(), stats.min().end());
    out->mutable_max()->Add(stats.max().begin(), stats.max().end());
    out->mutable_sum()->Add(stats.sum().begin(), stats.sum().end());
    out->mutable_sumsq()->Add(stats.sumsq().begin(), stats.sumsq().end());
  }
  ToProto(stats.sketch(), out->mutable_sketch());
}

void ToProto(const StatsSet& set, v1::StatsSetProto* out) {
  out->Clear();
  out->set_tokens(set.tokens());
  for (const LinearStats& linear : set) {
    v1::LinearStatsProto* l = out->add_linears();
    l->set_name(linear.name);
    ToProto(linear.input, l->mutable_input());
    ToProto(linear.output, l->mutable_output());
  }
}

absl::StatusOr<KeySketch> KeySketchFromProto(const v1::KeySketchProto& proto,
                                             absl::string_view context) {
  if (proto.format() != v1::SKETCH_FORMAT_F32_TOP16 &&
      !(proto.format() == v1::SKETCH_FORMAT_UNSPECIFIED && proto.key_deltas_size() == 0 &&
        proto.counts_size() == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": unknown sketch format ", proto.format()));
  }
  if (proto.key_deltas_size() != proto.counts_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": sketch has ", proto.key_deltas_size(), " keys but ",
                     proto.counts_size(), " counts"));
  }
  std::vector<uint16_t> keys;
  keys.reserve(static_cast<size_t>(proto.key_deltas_size()));
  uint64_t key = 0;
  for (int i = 0; i < proto.key_deltas_size(); ++i) {
    const uint32_t delta = proto.key_deltas(i);
    if (i > 0 && delta == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, ": sketch key repeated at index ", i));
    }
    key += delta;
    if (key >= static_cast<uint64_t>(kNumKeys)) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, ": sketch key ", key, " >= 65536 at index ", i));
    }
    keys.push_back(static_cast<uint16_t>(key));
  }
  std::vector<uint64_t> counts(proto.counts().begin(), proto.counts().end());
  absl::StatusOr<KeySketch> sketch = KeySketch::FromBuckets(std::move(keys),
                                                            std::move(counts));
  if (!sketch.ok()) return Annotate(context, sketch.status());
  return sketch;
}

absl::StatusOr<TensorStats> TensorStatsFromProto(const v1::TensorStatsProto& proto,
                                                 absl::string_view context) {
  absl::StatusOr<KeySketch> sketch = KeySketchFromProto(proto.sketch(), context);
  if (!sketch.ok()) return sketch.status();
  absl::StatusOr<TensorStats> stats = TensorStats::FromParts(
      proto.channels(), proto.count(),
      std::vector<float>(proto.min().begin(), proto.min().end()),
      std::vector<float>(proto.max().begin(), proto.max().end()),
      std::vector<double>(proto.sum().begin(), proto.sum().end()),
      std::vector<double>(proto.sumsq().begin(), proto.sumsq().end()),
      *std::move(sketch));
  if (!stats.ok()) return Annotate(context, stats.status());
  return stats;
}

absl::StatusOr<StatsSet> StatsSetFromProto(const v1::StatsSetProto& proto) {
  StatsSet set;
  if (absl::Status s = set.AddTokens(proto.tokens()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("stats set: bad token count ",
                                                   proto.tokens()));
  }
  for (int i = 0; i < proto.linears_size(); ++i) {
    const v1::LinearStatsProto& l = proto.linears(i);
    if (l.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stats set: linear #", i, " has an empty name"));
    }
    const std::string where = absl::StrCat("linear '", l.name(), "'");
    absl::StatusOr<TensorStats> input =
        TensorStatsFromProto(l.input(), absl::StrCat(where, " input"));
    if (!input.ok()) return input.status();
    absl::StatusOr<TensorStats> output =
        TensorStatsFromProto(l.output(), absl::StrCat(where, " output"));
    if (!output.ok()) return output.status();
    if (absl::Status s = set.Add(LinearStats(l.name(), *std::move(input),
                                             *std::move(output)));
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("stats set: ", s.message()));
    }
  }
  return set;
}

}  // namespace qcal::stats
