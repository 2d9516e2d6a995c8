// Export requests on the client: `qcal export` flags to an ExportRequest, starting an
// export and following it to its ExportResponse (used by `export` and by `run`, which
// ends with the mllm and compressed-tensors exports).
#ifndef QCAL_CLIENT_EXPORT_REQUEST_H_
#define QCAL_CLIENT_EXPORT_REQUEST_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "client/operation_wait.h"
#include "proto/qcal/v1/export.pb.h"
#include "proto/qcal/v1/operations.pb.h"

namespace qcal::client {

struct ExportFlags {
  std::string job_id;
  std::string threshold;  // a number > 0 or "recommended"
  std::string format;     // "" = the server's default (mllm)
  std::string smoothing;  // "" = none
  bool fuse = false;
  bool per_channel = false;
  std::string mode;  // "", "abs", "mllm"
  std::string out;
  bool wait = false;
};

// A usage error (exit_codes.h) names a bad --threshold; the server checks the rest.
absl::StatusOr<v1::ExportRequest> ToExportRequest(const ExportFlags& flags);

// INTERNAL when the operation's response is not an ExportResponse.
absl::StatusOr<v1::ExportResponse> ExportResponseOf(const v1::Operation& op);

// "exported mllm of job-1 at threshold 152 (smoothing none, shadow layers {1}, ...)
// to DIR\n".
std::string FormatExportSummary(const v1::ExportResponse& r);

// Starts the export and waits until it is done (display may be null); the error of an
// operation that failed, or its response.
absl::StatusOr<v1::ExportResponse> RunExport(Connection& connection,
                                             const v1::ExportRequest& request,
                                             OperationDisplay* display,
                                             double call_timeout_seconds);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_EXPORT_REQUEST_H_
