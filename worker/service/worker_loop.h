// The worker side of the service: `qcal-worker --coordinator ADDR`.
//
// Registers, leases a task, builds the task's samples itself from the corpus (the
// sampler is addressable, so no token ids travel), runs the engine while a
// heartbeat thread extends the lease, reports the statistics (client-streamed in
// chunks of about 2 MB), and repeats. The loaded model, tokenizer and corpus index
// are kept between tasks of the same job. A cancelled job (heartbeat says so) stops
// the task at the next batch. The first SIGTERM finishes the current task and
// exits; a second hands the task back at the next batch and exits.
// Errors of one task never end the loop: they are reported with FailTask (retryable
// unless the input itself is bad) and the worker moves on. An unreachable
// coordinator is retried with backoff.
#ifndef QCAL_WORKER_SERVICE_WORKER_LOOP_H_
#define QCAL_WORKER_SERVICE_WORKER_LOOP_H_

#include <atomic>
#include <string>

#include "worker/engine/engine.h"

namespace qcal {

struct WorkerLoopOptions {
  std::string coordinator;  // host:port
  std::string token_file;   // bearer token (worker token); empty = none
  std::string tls_ca;       // PEM root CA; empty = insecure channel
  std::string name;         // shown by the coordinator; default: hostname
  EngineOptions engine;     // device, threads, bf16 (batch size comes with each task)
  // Exit after this many tasks (0 = never); for tests.
  int max_tasks = 0;
  // Tests: sleep this long between an export's files and its final rename, so the
  // worker can be killed in the middle of an export.
  int export_pause_ms = 0;
  // Tests: wait this long between finishing a task and reporting it, with no
  // heartbeats (a straggler whose task gets a backup).
  int report_delay_ms = 0;
};

// Runs until `*stop_requests` > 0 and the current task is finished (first SIGTERM)
// or handed back (>= 2). Returns the process exit code.
int RunWorkerLoop(const WorkerLoopOptions& options, const std::atomic<int>* stop_requests);

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_WORKER_LOOP_H_
