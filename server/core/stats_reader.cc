#include "server/core/stats_reader.h"

#include "server/core/records.h"

namespace qcal::server {

absl::StatusOr<std::optional<v1::JobStatsChunk>> StatsReader::Next() {
  v1::JobStatsChunk chunk;
  if (!sent_head_) chunk = head_;
  int64_t bytes = 0;
  for (; next_ < names_.size() && bytes < max_chunk_bytes_; ++next_) {
    auto value = store_->Get(Family::kStats, StatsKey(head_.job_id(), static_cast<int64_t>(next_)));
    if (!value.ok()) return value.status();
    if (!*value) continue;  // no report yet (partial)
    if (!chunk.add_linears()->ParseFromString(**value)) return Corrupt("stats of " + names_[next_]);
    bytes += static_cast<int64_t>((*value)->size());
  }
  if (chunk.linears_size() == 0 && sent_head_) return std::nullopt;
  sent_head_ = true;
  return chunk;
}

}  // namespace qcal::server
