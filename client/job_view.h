// Human-readable views of jobs for `status` and `list`.
#ifndef QCAL_CLIENT_JOB_VIEW_H_
#define QCAL_CLIENT_JOB_VIEW_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

// "pending", "RUNNING", "job_failed", ... (case-insensitive, optional "job_"
// prefix) -> the JobState. A usage error names the accepted values.
absl::StatusOr<v1::JobState> ParseJobState(absl::string_view name);

// "2026-11-22 04:06:21 UTC"; "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& t);

// Several lines, each "key: value", ending with a newline.
std::string FormatJobDetails(const v1::Job& job);

// A table with a header: ID NAME STATE PROGRESS MODEL CREATED; "no jobs" when
// empty. Ends with a newline.
std::string FormatJobTable(const google::protobuf::RepeatedPtrField<v1::Job>& jobs);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_JOB_VIEW_H_
