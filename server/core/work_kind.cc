// The table of work kinds, and the statistics check the kinds that carry
// statistics share.
#include "server/core/work_kind.h"

#include "absl/strings/str_cat.h"
#include "common/stats/stats_proto.h"

namespace qcal::server {
namespace {

// Indexed by JobKind. A new kind is one more row.
const WorkKind* FindKind(int kind) {
  static const WorkKind* const kKinds[] = {&CalibrateKind(), &EvaluateKind(), &ExportKind()};
  constexpr int n = sizeof(kKinds) / sizeof(kKinds[0]);
  if (kind < 0 || kind >= n) return nullptr;
  return kKinds[kind];
}

}  // namespace

const WorkKind& KindOf(const v1::JobRecord& r) {
  const WorkKind* k = FindKind(r.kind());
  return k != nullptr ? *k : CalibrateKind();  // unreachable: CheckKnownKind at load
}

absl::Status CheckKnownKind(const std::string& id, const v1::JobRecord& r) {
  const WorkKind* k = FindKind(r.kind());
  if (k == nullptr || k->kind() != r.kind()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stored record jobs/", id, " has work kind ", static_cast<int>(r.kind()),
        ", which this qcal does not know (was the database written by a newer version?)"));
  }
  return absl::OkStatus();
}

absl::Status CheckStatistics(const ReportLayout& layout,
                             const std::vector<v1::LinearStatsProto>& linears,
                             CheckedReport* out) {
  const auto& names = layout.names;
  if (linears.size() != names.size()) {
    return absl::InvalidArgumentError(absl::StrCat("report has ", linears.size(),
                                                   " linear modules; the model has ", names.size()));
  }
  out->stats_operands.resize(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const v1::LinearStatsProto& l = linears[i];
    if (l.name() != names[i]) {
      return absl::InvalidArgumentError(absl::StrCat("report linear ", i, " is \"", l.name(),
                                                     "\", expected \"", names[i], "\""));
    }
    auto input = stats::TensorStatsFromProto(l.input(), l.name() + " input");
    if (!input.ok()) return input.status();
    auto output = stats::TensorStatsFromProto(l.output(), l.name() + " output");
    if (!output.ok()) return output.status();
    if (input->channels() != layout.in[i] || output->channels() != layout.out[i]) {
      return absl::InvalidArgumentError(absl::StrCat("report linear \"", l.name(),
                                                     "\" has the wrong channel count"));
    }
    out->stats_operands[i] = l.SerializeAsString();
    out->bytes += static_cast<int64_t>(out->stats_operands[i].size());
  }
  return absl::OkStatus();
}

}  // namespace qcal::server
