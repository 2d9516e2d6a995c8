// Exit codes of the `qcal` command line and the one-line error messages behind them.
//
// Every command returns an absl::Status; main turns it into one line on stderr
//   qcal: <command>: <STATUS_CODE_NAME>: <message>
// and an exit code that scripts can rely on:
//   0  success
//   1  internal or unknown error (anything not listed below)
//   2  usage error (bad flag, bad value, missing argument, unreadable --token-file)
//   3  the job ended JOB_FAILED or JOB_CANCELLED (submit --wait, watch, run), or the
//      operation ended with an error (evaluate --wait, operation --wait, run)
//   4  NOT_FOUND (unknown job or operation, missing model or corpus)
//   5  the request was refused: INVALID_ARGUMENT, FAILED_PRECONDITION,
//      PERMISSION_DENIED, UNIMPLEMENTED, ALREADY_EXISTS, OUT_OF_RANGE
//   6  server unreachable or too busy: UNAVAILABLE, DEADLINE_EXCEEDED,
//      RESOURCE_EXHAUSTED
//   7  UNAUTHENTICATED (missing or wrong bearer token)
//   130 interrupted (Ctrl-C / SIGTERM while watching or running)
//
// Errors that are not plain gRPC codes (usage, a job that ended badly, an interrupt)
// carry a payload that ExitCodeFor reads; build them with the helpers below.
#ifndef QCAL_CLIENT_EXIT_CODES_H_
#define QCAL_CLIENT_EXIT_CODES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace qcal::client {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,
  kExitUsage = 2,
  kExitJobEnded = 3,
  kExitNotFound = 4,
  kExitRefused = 5,
  kExitUnavailable = 6,
  kExitUnauthenticated = 7,
  kExitInterrupted = 130,
};

// The exit code for a gRPC / absl status code (the two enumerations share values).
int ExitCodeForCode(absl::StatusCode code);

// The exit code for a command's result: the markers below first, then the code.
int ExitCodeFor(const absl::Status& status);

// A usage error (exit 2), reported as INVALID_ARGUMENT.
absl::Status UsageError(absl::string_view message);
// The watched job ended in `state_name` ("JOB_FAILED" / "JOB_CANCELLED"); exit 3,
// reported under that name instead of a status code name.
absl::Status JobEndedError(absl::string_view state_name, absl::string_view message);
// The user interrupted the command (exit 130), reported as CANCELLED.
absl::Status InterruptedError(absl::string_view message);

bool IsUsageError(const absl::Status& status);
bool IsInterrupted(const absl::Status& status);

// "qcal: <command>: <NAME>: <message>" (no newline). `command` may be empty
// ("qcal: <NAME>: <message>"). Newlines and tabs in the message become spaces and
// very long messages are cut, so the result is always one line.
std::string ErrorLine(absl::string_view command, const absl::Status& status);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_EXIT_CODES_H_
