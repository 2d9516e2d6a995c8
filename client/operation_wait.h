// Following a long-running operation (Operations service) until it is done: the
// shared core of `operation --wait`, `evaluate --wait` and `run`.
//
// How the wait is shown (DisplayMode, as JobDisplay does for jobs):
//   terminal: one line redrawn in place with '\r', e.g.
//     operations/eval-000002-3f2a RUNNING [######..................] 12/48 units  1m23s
//   plain: a line each time the operation's state or units change, e.g.
//     operations/eval-000002-3f2a RUNNING units 12/48 elapsed 1m23s
//   json: nothing (the command prints its result as JSON).
// Then the final line, in terminal and plain modes:
//     operations/eval-000002-3f2a DONE: 48/48 units in 2m03s
//     operations/eval-000002-3f2a FAILED after 1m02s: INTERNAL: worker crashed
// Units come from the metadata when it is a qcal.v1.EvaluateMetadata (variants x
// evaluation shards); other kinds show no units. Elapsed time counts from the first
// version the display saw (an Operation carries no times).
#ifndef QCAL_CLIENT_OPERATION_WAIT_H_
#define QCAL_CLIENT_OPERATION_WAIT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/live_line.h"
#include "client/progress.h"
#include "proto/qcal/v1/operations.pb.h"

namespace qcal::client {

// "RUNNING", "DONE", "FAILED", or "CANCELLED" (ended with the CANCELLED code).
std::string OperationStateName(const v1::Operation& op);

// Units done / total from an EvaluateMetadata; nullopt for other metadata.
struct OperationUnits {
  int64_t done = 0;
  int64_t total = 0;
};
std::optional<OperationUnits> UnitsOf(const v1::Operation& op);

// "INTERNAL: worker crashed" for an operation that ended with an error; "" otherwise.
std::string OperationErrorText(const v1::Operation& op);

// The lines described above (no '\r', no newline).
std::string FormatOperationProgressLine(const v1::Operation& op, absl::Duration elapsed);
std::string FormatOperationPlainLine(const v1::Operation& op, absl::Duration elapsed);
std::string FormatOperationFinalLine(const v1::Operation& op, absl::Duration elapsed);

// Shows successive versions of one operation. Not thread-safe: one waiting thread
// calls it.
class OperationDisplay {
 public:
  // `out` must outlive the display.
  OperationDisplay(std::ostream* out, DisplayMode mode) : line_(out, mode) {}

  void Update(const v1::Operation& op, absl::Time now = absl::Now());
  // Ends the display: terminal mode closes its line; terminal and plain modes print
  // FormatOperationFinalLine when the last version is done. Idempotent.
  void Finish(absl::Time now = absl::Now());

 private:
  DisplayLines Lines(const v1::Operation& op, absl::Time now) const;

  LiveLine line_;
  std::optional<v1::Operation> op_;
  absl::Time first_seen_;
};

struct OperationWaitOptions {
  // Checked between calls; a non-OK result ends the wait with that status (e.g.
  // `run`'s coordinator died). May be empty.
  std::function<absl::Status()> health_check;
  // How long each WaitOperation asks the server to hold the call: the display
  // moves and an interrupt is noticed within about this long.
  absl::Duration slice = absl::Seconds(1);
  // Deadline of each call on top of the slice (the --timeout of unary calls).
  double call_timeout_seconds = 30;
  // While the server is unreachable (UNAVAILABLE, DEADLINE_EXCEEDED) the wait retries
  // with backoff for up to this long (a coordinator restart resumes operations).
  absl::Duration reconnect_for = absl::Seconds(60);
};

// Calls WaitOperation for `op` (a version already fetched, shown first) until it is
// done, showing every version on `display` (may be null); returns the final version
// whatever its result (see OperationOutcome). Ends with InterruptedError when a
// signal arrives under a ScopedInterruptHandler, with the health check's status when
// it fails, and with the call's status when WaitOperation fails otherwise. `display`
// is not Finish()ed.
absl::StatusOr<v1::Operation> WaitUntilDone(const Connection& connection, v1::Operation op,
                                            OperationDisplay* display,
                                            const OperationWaitOptions& options = {});

// OK for an operation that is done without error; JobEndedError (exit 3) named after
// its error code, "operation <name> failed: <message>", for one that ended with an
// error; INTERNAL for one that is not done.
absl::Status OperationOutcome(const v1::Operation& op);

// Best effort CancelOperation (e.g. after an interrupt), with a short deadline.
void CancelOperationQuietly(const Connection& connection, const std::string& name);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_OPERATION_WAIT_H_
