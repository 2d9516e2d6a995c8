// Following a job until it ends: the shared core of `submit --wait`, `watch` and
// `run`.
#ifndef QCAL_CLIENT_JOB_WATCH_H_
#define QCAL_CLIENT_JOB_WATCH_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/progress.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

struct WatchOptions {
  // Called about every 100 ms from a helper thread while waiting; a non-OK result
  // ends the watch with that status (e.g. `run`'s coordinator died). May be empty.
  std::function<absl::Status()> health_check;
  // After the stream broke (UNAVAILABLE, or ended before a final state) the watch
  // reconnects with backoff for up to this long without hearing from the server
  // (a coordinator restart resumes its jobs). Does not apply when the very first
  // call fails: an unreachable server is reported at once.
  absl::Duration reconnect_for = absl::Seconds(60);
};

// Streams WatchJob for `job_id`, showing every version on `display`, until the job
// is final, then returns that Job whatever its state (see JobOutcome). Also ends,
// with InterruptedError, when a signal arrives under a ScopedInterruptHandler, and
// with the health check's status when it fails. `display` is not Finish()ed.
absl::StatusOr<v1::Job> WatchUntilFinal(const Connection& connection,
                                        const std::string& job_id, JobDisplay* display,
                                        const WatchOptions& options = {});

// OK for JOB_CALIBRATED; JobEndedError (exit 3) for JOB_FAILED / JOB_CANCELLED,
// naming the job and the reason.
absl::Status JobOutcome(const v1::Job& job);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_JOB_WATCH_H_
