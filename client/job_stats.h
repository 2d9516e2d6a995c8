// Downloading a job's statistics (GetJobStats) and writing them in the formats of
// common/stats/outputs.h. Used by `stats` and `run`.
#ifndef QCAL_CLIENT_JOB_STATS_H_
#define QCAL_CLIENT_JOB_STATS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"
#include "common/stats/stats_set.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

struct JobStats {
  stats::StatsSet set;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  int64_t samples = 0;
};

// Reads the whole GetJobStats stream of `job_id` and rebuilds the StatsSet,
// validating every linear (TensorStatsFromProto) as it arrives. With
// `allow_partial` an unfinished job's statistics so far are returned; otherwise the
// server answers FAILED_PRECONDITION for a job that is not CALIBRATED. A corrupt
// chunk is DATA_LOSS naming the linear.
absl::StatusOr<JobStats> FetchJobStats(const Connection& connection,
                                       const std::string& job_id, bool allow_partial);

enum class StatsFormat { kMllm, kAbs, kSmoothQuant };

// "mllm", "abs", "smoothquant" -> the format; a usage error otherwise.
absl::StatusOr<StatsFormat> ParseStatsFormat(absl::string_view name);

// Writes one file: act_scales_distribution.json's format (kMllm: signed values as
// mllm computes them; kAbs: on |x|) or SmoothQuant's act_scales safetensors. The
// file is written under a temporary name and renamed into place.
absl::Status WriteStatsFile(const stats::StatsSet& set, StatsFormat format,
                            const std::string& path);

// Writes `content` to `path` under a temporary name renamed into place. A file that
// cannot be created is a usage error naming it (an unwritable --out).
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

// A usage error unless `path`'s folder exists and `path` is not a folder (checked
// before a long download).
absl::Status CheckOutputPath(const std::string& path);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_JOB_STATS_H_
