// The worker side of an export task (TASK_EXPORT, export.proto): turns the task's
// payload and its job's merged statistics into common/export's WriteExport, adds the
// model and corpus hashes to the provenance, and describes the result as an
// ExportResponse. No libtorch, no network (the worker loop fetches the statistics).
#ifndef QCAL_WORKER_SERVICE_EXPORT_TASK_H_
#define QCAL_WORKER_SERVICE_EXPORT_TASK_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/stats/stats_set.h"
#include "proto/qcal/v1/export.pb.h"
#include "proto/qcal/v1/worker.pb.h"

namespace qcal {

// Lower-case hex SHA-256 of the files' contents, in the order given, each preceded by
// its base name and size (so renaming or splitting files changes the hash). Errors
// name the file.
absl::StatusOr<std::string> Sha256OfFiles(const std::vector<std::string>& paths);

// The files that make up a model folder's weights: config.json, then
// model.safetensors or model.safetensors.index.json and its shards (sorted).
absl::StatusOr<std::vector<std::string>> ModelContentFiles(const std::string& model_dir);

struct ExportTaskOptions {
  // Called between the export's files and the final rename (tests: a pause to kill
  // the worker in).
  std::function<void(const std::string& partial_dir)> before_rename;
};

// Writes the export of `task` (payload ExportTaskPayload) for `stats`. When the final
// folder already holds this operation's export (a retry after the rename but before
// the report landed), describes it instead of failing.
absl::StatusOr<v1::ExportResponse> RunExportTask(const v1::Task& task,
                                                 const stats::StatsSet& stats,
                                                 const ExportTaskOptions& options = {});

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_EXPORT_TASK_H_
