#include "server/store/stats_merge.h"

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"
#include "common/status_macros.h"
#include "proto/qcal/v1/stats.pb.h"
#include "server/store/store.h"

namespace qcal::server {
namespace {

// A name from possibly corrupt bytes, safe and short enough for an error message.
std::string Quote(absl::string_view name) {
  constexpr size_t kMaxShown = 80;
  std::string shown = absl::CHexEscape(name.substr(0, kMaxShown));
  if (name.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("'", shown, "'");
}

absl::Status ParseProto(absl::string_view bytes, absl::string_view what,
                        v1::LinearStatsProto* proto) {
  if (bytes.size() > static_cast<size_t>(INT_MAX) ||
      !proto->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a valid LinearStatsProto (", bytes.size(), " bytes)"));
  }
  if (proto->name().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": linear has an empty name"));
  }
  return absl::OkStatus();
}

struct ParsedLinear {
  std::string name;
  stats::TensorStats input;
  stats::TensorStats output;
};

absl::StatusOr<ParsedLinear> Parse(absl::string_view bytes, absl::string_view what) {
  v1::LinearStatsProto proto;
  QCAL_RETURN_IF_ERROR(ParseProto(bytes, what, &proto));
  const std::string where = absl::StrCat(what, ": linear ", Quote(proto.name()));
  QCAL_ASSIGN_OR_RETURN(
      stats::TensorStats input,
      stats::TensorStatsFromProto(proto.input(), absl::StrCat(where, " input")));
  QCAL_ASSIGN_OR_RETURN(
      stats::TensorStats output,
      stats::TensorStatsFromProto(proto.output(), absl::StrCat(where, " output")));
  return ParsedLinear{std::move(*proto.mutable_name()), std::move(input),
                      std::move(output)};
}

std::string Label(bool has_existing, size_t i) {
  if (has_existing && i == 0) return "existing value";
  return absl::StrCat("operand ", has_existing ? i - 1 : i);
}

absl::Status MergeSide(stats::TensorStats& into, const stats::TensorStats& from,
                       absl::string_view where) {
  absl::Status s = into.Merge(from);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  return absl::OkStatus();
}

}  // namespace

std::string LinearStatsShape::DebugString() const {
  return absl::StrCat("linear ", Quote(name), " (", in_channels, " -> ", out_channels,
                      " channels)");
}

absl::StatusOr<LinearStatsShape> ValidateLinearStats(absl::string_view value) {
  QCAL_ASSIGN_OR_RETURN(ParsedLinear parsed, Parse(value, "value"));
  return LinearStatsShape{std::move(parsed.name), parsed.input.channels(),
                          parsed.output.channels()};
}

absl::StatusOr<std::string> MergeLinearStatsViews(
    const absl::string_view* existing, const std::vector<absl::string_view>& operands) {
  std::vector<absl::string_view> values;
  values.reserve(operands.size() + 1);
  if (existing != nullptr) values.push_back(*existing);
  values.insert(values.end(), operands.begin(), operands.end());
  const bool has_existing = existing != nullptr;
  if (values.empty()) return absl::InvalidArgumentError("no LinearStatsProto to merge");

  QCAL_ASSIGN_OR_RETURN(ParsedLinear acc, Parse(values[0], Label(has_existing, 0)));
  if (values.size() == 1) return std::string(values[0]);
  for (size_t i = 1; i < values.size(); ++i) {
    const std::string what = Label(has_existing, i);
    QCAL_ASSIGN_OR_RETURN(ParsedLinear next, Parse(values[i], what));
    if (next.name != acc.name) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": linear ", Quote(next.name),
                                                     " does not merge into linear ",
                                                     Quote(acc.name)));
    }
    const std::string where = absl::StrCat(what, ": linear ", Quote(acc.name));
    QCAL_RETURN_IF_ERROR(MergeSide(acc.input, next.input, absl::StrCat(where, " input")));
    QCAL_RETURN_IF_ERROR(
        MergeSide(acc.output, next.output, absl::StrCat(where, " output")));
  }

  v1::LinearStatsProto merged;
  merged.set_name(std::move(acc.name));
  stats::ToProto(acc.input, merged.mutable_input());
  stats::ToProto(acc.output, merged.mutable_output());
  std::string out;
  if (!merged.SerializeToString(&out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("merged statistics of linear ", Quote(merged.name()),
                     " are too large to serialize (", merged.ByteSizeLong(), " bytes)"));
  }
  return out;
}

absl::StatusOr<std::string> MergeLinearStats(const std::string* existing,
                                             const std::vector<std::string>& operands) {
  absl::string_view existing_view;
  if (existing != nullptr) existing_view = *existing;
  std::vector<absl::string_view> views(operands.begin(), operands.end());
  return MergeLinearStatsViews(existing != nullptr ? &existing_view : nullptr, views);
}

}  // namespace qcal::server
