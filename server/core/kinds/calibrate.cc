// Calibration: a job's shards are runs of corpus samples; a report carries the
// statistics of every linear for exactly its shards' samples, merged into the job's.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/core/work_kind.h"

namespace qcal::server {
namespace {

class Calibrate final : public WorkKind {
 public:
  v1::JobKind kind() const override { return v1::JOB_KIND_CALIBRATE; }
  const char* noun() const override { return "calibration"; }
  bool is_operation() const override { return false; }
  bool reports_statistics() const override { return true; }

  bool SameTask(const v1::JobRecord&, int64_t, int64_t) const override { return true; }

  int64_t TokensPerSample(const v1::JobRecord& r) const override {
    return r.job().spec().sampling().seq_len();
  }

  int64_t SamplesOfShards(const v1::JobRecord& r, int64_t begin, int64_t end) const override {
    const int64_t size = r.shard_size();
    const int64_t total = r.job().progress().samples_total();
    return std::min(total, end * size) - std::min(total, begin * size);
  }

  void FillTask(const v1::JobRecord& r, int64_t begin, int64_t end,
                v1::Task* task) const override {
    const int64_t size = r.shard_size();
    const int64_t total = r.job().progress().samples_total();
    task->set_kind(v1::TASK_CALIBRATE);
    *task->mutable_sampling() = r.job().spec().sampling();
    task->set_sample_begin(std::min(total, begin * size));
    task->set_sample_end(std::min(total, end * size));
  }

  absl::StatusOr<CheckedReport> CheckReport(const ReportLayout& layout,
                                            const v1::CompleteTaskHeader& header,
                                            const std::vector<v1::LinearStatsProto>& linears,
                                            const google::protobuf::Any* result) const override {
    if (header.tokens() <= 0) return absl::InvalidArgumentError("report has no tokens");
    // More tokens than the samples can hold is a lie, and summing lies overflows.
    if (header.tokens() > layout.samples * layout.tokens_per_sample) {
      return absl::InvalidArgumentError(absl::StrCat(
          "report claims ", header.tokens(), " tokens; ", layout.samples, " samples of at most ",
          layout.tokens_per_sample, " tokens hold at most ", layout.samples * layout.tokens_per_sample));
    }
    if (result != nullptr) {
      return absl::InvalidArgumentError("a calibration report carries statistics only");
    }
    CheckedReport checked;
    if (absl::Status st = CheckStatistics(layout, linears, &checked); !st.ok()) return st;
    return checked;
  }

  absl::Status Finish(v1::JobRecord&, const std::vector<v1::ShardRecord>&,
                      const CheckedReport&) const override {
    return absl::OkStatus();  // the merged statistics are the result
  }
};

}  // namespace

const WorkKind& CalibrateKind() {
  static const Calibrate kind;
  return kind;
}

}  // namespace qcal::server
