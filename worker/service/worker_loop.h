// The worker side of the service: `qcal-worker --coordinator ADDR`.
//
// WorkerLoop registers, leases a task, runs it with the runner of its kind
// (task_runner.h) while a heartbeat thread extends the lease, reports the result
// and repeats. A task whose heartbeat says cancelled (job cancelled, superseded by
// a backup) or lost stops at the next batch and reports nothing. The first stop
// request finishes the current task and exits; a second hands the task back at the
// next batch and exits.
// Errors of one task never end the loop: they are reported with FailTask
// (retryable unless the input itself is bad) and the worker moves on. An
// unreachable coordinator is retried with backoff; one that forgot the worker (it
// restarted: NOT_FOUND) is registered with again; a report that fails in transit is
// retried for `report_retry` (the lease survives a coordinator restart and a report
// that did land is ALREADY_EXISTS); a refused one (stale lease) is dropped.
#ifndef QCAL_WORKER_SERVICE_WORKER_LOOP_H_
#define QCAL_WORKER_SERVICE_WORKER_LOOP_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "worker/engine/engine.h"
#include "worker/service/coordinator_client.h"
#include "worker/service/task_runner.h"

namespace qcal {

struct WorkerLoopOptions {
  std::string coordinator;  // host:port
  std::string token_file;   // bearer token (worker token); empty = none
  std::string tls_ca;       // PEM root CA; empty = insecure channel
  std::string name;         // shown by the coordinator; default: hostname-pid
  EngineOptions engine;     // device, threads, bf16 (batch size comes with each task)
  // Exit after this many tasks (0 = never); for tests.
  int max_tasks = 0;
  // Tests: sleep this long between an export's files and its final rename, so the
  // worker can be killed in the middle of an export.
  int export_pause_ms = 0;
  // Tests: wait this long between finishing a task and reporting it, with no
  // heartbeats (a straggler whose task gets a backup).
  int report_delay_ms = 0;
  // How long a report that fails in transit is retried, and the first backoff.
  std::chrono::milliseconds report_retry{60'000};
  std::chrono::milliseconds first_backoff{200};
};

class WorkerLoop {
 public:
  // `client` is not owned and must outlive the loop.
  WorkerLoop(WorkerLoopOptions options, CoordinatorClient* client, RunnerTable runners,
             const std::atomic<int>* stop_requests);
  // Runs until stopped (or max_tasks); returns the process exit code (1 when the
  // coordinator refuses the worker's credentials).
  int Run();

 private:
  // Registers when needed; false (after its backoff) when that failed.
  bool EnsureRegistered(int* backoff_ms, bool* fatal);
  void RunTask(const v1::Task& task);
  void Fail(const v1::Task& task, const std::string& reason, bool retryable);
  // Reports with retries; `lease_lost` says when the heartbeats found the lease gone.
  void Report(const v1::Task& task, TaskOutcome outcome, double seconds,
              const std::function<bool()>& lease_lost);
  void Sleep(int ms);
  void Log(const std::string& msg) const;

  const WorkerLoopOptions o_;
  CoordinatorClient* const client_;
  const RunnerTable runners_;
  const std::atomic<int>* const stop_;
  std::string name_;
  std::string worker_id_;
  int heartbeat_ms_ = 10000;
};

// The production wiring: connects with ConnectToCoordinator and runs the loop with
// the model runners (runners.h). Returns the process exit code.
int RunWorkerLoop(const WorkerLoopOptions& options, const std::atomic<int>* stop_requests);

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_WORKER_LOOP_H_
