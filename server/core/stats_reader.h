// A job's merged statistics read from the store chunk by chunk, in forward order,
// so that a stream (GetJobStats, GetTaskStats) holds one chunk at a time however
// large the model. The first chunk carries the job's id, state, tokens and samples;
// every chunk holds at most `max_chunk_bytes` of linears (at least one linear);
// a job with no statistics yet (partial) still yields that first chunk. Linears
// without a report yet (partial) are skipped.
//
// The reader sees the store as it is when each chunk is read: a partial read of a
// running job may mix reports, as any partial read does. Not thread-safe.
#ifndef QCAL_SERVER_CORE_STATS_READER_H_
#define QCAL_SERVER_CORE_STATS_READER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/qcal/v1/calibration.pb.h"
#include "server/store/store.h"

namespace qcal::server {

class StatsReader {
 public:
  // `head` is the first chunk's header (job_id, state, tokens, samples); `names`
  // the linears in forward order. `store` must outlive the reader.
  StatsReader(Store* store, v1::JobStatsChunk head, std::vector<std::string> names,
              int64_t max_chunk_bytes)
      : store_(store), head_(std::move(head)), names_(std::move(names)),
        max_chunk_bytes_(max_chunk_bytes) {}

  // The next chunk, or nullopt after the last. DATA_LOSS for a corrupt value.
  absl::StatusOr<std::optional<v1::JobStatsChunk>> Next();

 private:
  Store* const store_;
  const v1::JobStatsChunk head_;
  const std::vector<std::string> names_;
  const int64_t max_chunk_bytes_;
  size_t next_ = 0;
  bool sent_head_ = false;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_STATS_READER_H_
