// TASK_EXPORT: reads the parent job's statistics (GetTaskStats, under this task's
// lease) and writes the export (export_task.h); needs the weights' files, not a
// loaded model. An export cancelled while its files were written removes them, so
// nothing finished-looking stays behind a cancelled operation.
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/stats/stats_proto.h"
#include "worker/service/export_task.h"
#include "worker/service/runners.h"

namespace qcal {
namespace {

class ExportRunner final : public TaskRunner {
 public:
  explicit ExportRunner(int pause_ms) : pause_ms_(pause_ms) {}

  absl::StatusOr<TaskOutcome> Run(const TaskContext& ctx) override {
    v1::GetTaskStatsRequest req;
    req.set_worker_id(ctx.worker_id);
    req.set_task_id(ctx.task.task_id());
    req.set_lease_id(ctx.task.lease_id());
    auto read = ctx.client->ReadTaskStats(req);
    if (!read.ok()) return read.status();
    auto set = stats::StatsSetFromProto(read->stats);
    if (!set.ok()) return set.status();
    if (absl::Status st = set->AddTokens(read->tokens); !st.ok()) return st;
    ExportTaskOptions options;
    if (pause_ms_ > 0) {
      options.before_rename = [this, &ctx](const std::string& partial) {
        ctx.log(absl::StrCat("export written to ", partial, "; pausing ", pause_ms_,
                             " ms before the rename (--debug-export-pause-ms)"));
        std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms_));
      };
    }
    auto written = RunExportTask(ctx.task, *set, options);
    if (!written.ok()) return written.status();
    if (ctx.cancelled()) {
      std::error_code ec;
      std::filesystem::remove_all(written->output_dir(), ec);
    }
    ctx.log(absl::StrCat("task ", ctx.task.task_id(), ": exported ", written->files_size(),
                         " files (", written->bytes(), " bytes) to ", written->output_dir()));
    TaskOutcome out;
    out.result = std::make_unique<v1::ExportResponse>(*std::move(written));
    return out;
  }

 private:
  const int pause_ms_;
};

}  // namespace

std::unique_ptr<TaskRunner> MakeExportRunner(int pause_ms) {
  return std::make_unique<ExportRunner>(pause_ms);
}

}  // namespace qcal
