// Rules on JobState that every side of the API shares (coordinator, client, tests,
// benchmarks), written once next to the generated messages.
#ifndef QCAL_PROTO_QCAL_V1_JOB_STATE_H_
#define QCAL_PROTO_QCAL_V1_JOB_STATE_H_

#include "proto/qcal/v1/job.pb.h"

namespace qcal::v1 {

// CALIBRATED, SUCCEEDED (an operation's work), FAILED or CANCELLED: the job will
// not change again.
inline bool IsFinalJobState(JobState s) {
  return s == JOB_CALIBRATED || s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

}  // namespace qcal::v1

#endif  // QCAL_PROTO_QCAL_V1_JOB_STATE_H_
