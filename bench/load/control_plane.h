// The load test's control-plane phase: client threads making SubmitJob, GetJob and
// ListJobs calls while WatchJob streams follow a job that a fake worker leases and
// completes; latency per RPC, stream open time and change-to-stream delay.
//
// Threading: call RunControlPlane from the main thread (it starts the coordinator,
// see coordinator_process.h); it starts and joins its own client and worker threads.
// Errors: every failure (an RPC error, a bad stream, a failed check) is printed and
// counted in ControlResult::errors; nothing is thrown or returned otherwise.
#ifndef QCAL_BENCH_LOAD_CONTROL_PLANE_H_
#define QCAL_BENCH_LOAD_CONTROL_PLANE_H_

#include <cstdint>
#include <string>

#include "bench/load/common.h"

namespace qcal::bench {

struct ControlResult {
  bool ran = false;
  int64_t errors = 0;  // failed calls, bad streams, failed checks
  Summary submit, get, list, watch_open, watch_delivery, worker_complete;
  int watchers = 0;
  int64_t watch_messages = 0;
  double seconds = 0;
  double load_before = 0, load_after = 0;  // 1-minute load average of the machine
};

// Runs the phase against a coordinator of its own (scratch under work/control),
// bounded by f.phase_seconds; prints its progress and figures to stdout.
ControlResult RunControlPlane(const Flags& f, const std::string& work);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_LOAD_CONTROL_PLANE_H_
