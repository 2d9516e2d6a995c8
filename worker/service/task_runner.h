// One runner per kind of task (v1::TaskKind), behind one interface, so that the
// worker loop (worker_loop.h) leases, heartbeats and reports the same way for all
// of them and never asks which kind it runs. The runners that need a model are in
// runners.h; tests give the loop fakes.
#ifndef QCAL_WORKER_SERVICE_TASK_RUNNER_H_
#define QCAL_WORKER_SERVICE_TASK_RUNNER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proto/qcal/v1/worker.pb.h"
#include "worker/service/coordinator_client.h"

namespace qcal {

// What a runner may use while it runs one task.
struct TaskContext {
  const v1::Task& task;
  const std::string& worker_id;
  CoordinatorClient* client;
  // Call with the samples done so far (heartbeats carry it); false: stop at the
  // next batch and return CANCELLED (the lease is gone or the worker is stopping).
  std::function<bool(int64_t samples_done)> keep_going;
  // Whether the coordinator said the task is cancelled (a runner that wrote files
  // removes them).
  std::function<bool()> cancelled;
  std::function<void(const std::string&)> log;
};

// What the report of a finished task carries.
struct TaskOutcome {
  int64_t samples = 0;
  int64_t tokens = 0;
  v1::StatsSetProto stats;                          // calibrations
  std::unique_ptr<google::protobuf::Message> result;  // evaluations, exports
};

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Errors are reported with FailTask: retryable unless IsRetryable says otherwise.
  virtual absl::StatusOr<TaskOutcome> Run(const TaskContext& ctx) = 0;
  // The model this runner holds loaded ("" if none); LeaseTask prefers its jobs.
  virtual std::string loaded_model() const { return {}; }
};

using RunnerTable = std::map<v1::TaskKind, std::unique_ptr<TaskRunner>>;

// Statuses that retrying on another worker cannot fix (bad input, not a transient
// failure): INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, PERMISSION_DENIED.
bool IsRetryable(const absl::Status& s);

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_TASK_RUNNER_H_
