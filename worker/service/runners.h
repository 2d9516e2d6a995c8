// The task runners that do real work (task_runner.h), one per task kind, and the
// table the production worker runs with.
#ifndef QCAL_WORKER_SERVICE_RUNNERS_H_
#define QCAL_WORKER_SERVICE_RUNNERS_H_

#include <memory>

#include "worker/service/model_cache.h"
#include "worker/service/task_runner.h"
#include "worker/service/worker_loop.h"

namespace qcal {

// TASK_CALIBRATE: the statistics of the task's samples (calibrate_runner.cc).
std::unique_ptr<TaskRunner> MakeCalibrateRunner(ModelCache* models);
// TASK_EVALUATE: one EvaluatePartial per evaluation shard of the task, in order
// (evaluate_runner.cc).
std::unique_ptr<TaskRunner> MakeEvaluateRunner(ModelCache* models);
// TASK_EXPORT: reads the parent job's statistics under the task's lease and writes
// the export (export_runner.cc; export_task.h writes the files). `pause_ms`: see
// WorkerLoopOptions.export_pause_ms.
std::unique_ptr<TaskRunner> MakeExportRunner(int pause_ms);

// Every kind, sharing `models` (not owned; must outlive the table).
RunnerTable ModelRunners(ModelCache* models, const WorkerLoopOptions& options);

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_RUNNERS_H_
