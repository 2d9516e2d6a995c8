// Export: the work of an Export operation. One unit (shard 0) whose task writes the
// export folder on a worker from the parent job's statistics (GetTaskStats); its
// report is the ExportResponse. Never backed up: two workers writing one folder
// would race.
#include "absl/strings/str_cat.h"
#include "server/core/work_kind.h"

namespace qcal::server {
namespace {

class Export final : public WorkKind {
 public:
  v1::JobKind kind() const override { return v1::JOB_KIND_EXPORT; }
  const char* noun() const override { return "export"; }
  bool is_operation() const override { return true; }
  bool allows_backups() const override { return false; }
  bool reads_parent_stats() const override { return true; }

  bool SameTask(const v1::JobRecord&, int64_t, int64_t) const override { return true; }
  int64_t SamplesOfShards(const v1::JobRecord&, int64_t, int64_t) const override { return 0; }
  int64_t TokensPerSample(const v1::JobRecord&) const override { return 0; }

  void FillTask(const v1::JobRecord& r, int64_t, int64_t, v1::Task* task) const override {
    task->set_kind(v1::TASK_EXPORT);
    *task->mutable_sampling() = r.job().spec().sampling();
    task->set_sample_begin(0);
    task->set_sample_end(0);
    task->mutable_payload()->PackFrom(r.export_payload());
  }

  absl::StatusOr<CheckedReport> CheckReport(const ReportLayout&, const v1::CompleteTaskHeader&,
                                            const std::vector<v1::LinearStatsProto>& linears,
                                            const google::protobuf::Any* result) const override {
    v1::ExportResponse response;
    if (!linears.empty() || result == nullptr || !result->UnpackTo(&response)) {
      return absl::InvalidArgumentError("an export report carries one ExportResponse and no statistics");
    }
    CheckedReport checked;
    checked.result = response.SerializeAsString();
    return checked;
  }

  absl::Status Finish(v1::JobRecord& r, const std::vector<v1::ShardRecord>&,
                      const CheckedReport& last) const override {
    v1::ExportResponse response;
    if (!response.ParseFromString(last.result)) return absl::InternalError("export result lost");
    if (response.output_dir() != r.export_payload().output_dir()) {
      return absl::FailedPreconditionError(absl::StrCat("export report names ", response.output_dir(),
                                                        ", not the requested ",
                                                        r.export_payload().output_dir()));
    }
    *r.mutable_export_response() = std::move(response);
    return absl::OkStatus();
  }

  void DescribeOperation(const v1::JobRecord& r, v1::Operation* op) const override {
    v1::ExportMetadata meta;
    meta.set_job_id(r.parent_job());
    meta.set_output_dir(r.export_payload().output_dir());
    meta.set_format(r.export_payload().request().format());
    meta.set_threshold(r.export_payload().threshold());
    op->mutable_metadata()->PackFrom(meta);
    if (r.job().state() == v1::JOB_SUCCEEDED) op->mutable_response()->PackFrom(r.export_response());
  }
};

}  // namespace

const WorkKind& ExportKind() {
  static const Export kind;
  return kind;
}

}  // namespace qcal::server
