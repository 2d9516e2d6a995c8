// Small helpers on the coordinator's records, shared by its translation units
// (coordinator.cc, export_op.cc). Internal to server/core.
#ifndef QCAL_SERVER_CORE_RECORDS_H_
#define QCAL_SERVER_CORE_RECORDS_H_

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::server {

// A job (or an evaluation's or export's internal job) that will not change again.
inline bool IsFinal(v1::JobState s) {
  return s == v1::JOB_CALIBRATED || s == v1::JOB_FAILED || s == v1::JOB_CANCELLED;
}

inline int64_t ToMs(absl::Time t) { return absl::ToUnixMillis(t); }

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_RECORDS_H_
