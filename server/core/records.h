// Small helpers on the coordinator's records and store keys, shared by its
// translation units (coordinator.cc and the files split from it). Internal to
// server/core.
#ifndef QCAL_SERVER_CORE_RECORDS_H_
#define QCAL_SERVER_CORE_RECORDS_H_

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "proto/qcal/v1/job.pb.h"
#include "proto/qcal/v1/job_state.h"

namespace qcal::server {

// A job (or an evaluation's or export's internal job) that will not change again.
inline bool IsFinal(v1::JobState s) { return v1::IsFinalJobState(s); }

// Largest num_samples of a job or an evaluation.
inline constexpr int64_t kMaxSamples = 10'000'000;
// Shards of one calibration job, or variants x shards of one evaluation: each is a
// stored record, so this bounds what one request can cost the coordinator (memory,
// store, restart time) before anything is allocated.
inline constexpr int64_t kMaxShardsPerJob = int64_t{1} << 18;  // 262,144
// kMeta key of the next job's sequence number.
inline constexpr char kMetaNextJob[] = "next_job_seq";

// kShards key of a job's shard: "<job>/<12-digit index>" (sorted by index).
inline std::string ShardKey(const std::string& job, int64_t shard) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/%012" PRId64, shard);
  return job + buf;
}

// kStats key of a job's linear: "<job>/<6-digit forward index>".
inline std::string StatsKey(const std::string& job, int64_t linear) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/%06" PRId64, linear);
  return job + buf;
}

inline absl::Status Corrupt(const std::string& what) {
  return absl::DataLossError(absl::StrCat("stored record ", what, " is corrupt"));
}

// The coordinator's speed estimates (a job's, a worker's, a worker's on one job):
// the mean of the previous estimate and the new sample; the sample when none yet.
inline double MovingAverage(double old, double sample) {
  return old > 0 ? 0.5 * old + 0.5 * sample : sample;
}

inline int64_t ToMs(absl::Time t) { return absl::ToUnixMillis(t); }

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_RECORDS_H_
