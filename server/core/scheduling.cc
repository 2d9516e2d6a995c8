#include "server/core/scheduling.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qcal::server {

int64_t TaskShards(int64_t pending_shards, int64_t live_workers, int64_t shard_size,
                   double samples_per_second, double report_interval_seconds) {
  if (pending_shards <= 1) return 1;
  const int64_t workers = std::max<int64_t>(1, live_workers);
  const int64_t share = (pending_shards + workers - 1) / workers;
  int64_t interval = 1;
  if (samples_per_second > 0 && shard_size > 0) {
    const double shards = samples_per_second * report_interval_seconds / shard_size;
    interval = shards >= static_cast<double>(pending_shards)
                   ? pending_shards
                   : std::max<int64_t>(1, static_cast<int64_t>(shards));
  }
  return std::clamp<int64_t>(std::min(share, interval), 1, pending_shards);
}

double SecondsLeft(const RunningTask& t) {
  const int64_t left = std::max<int64_t>(0, t.samples - t.samples_done);
  if (t.samples_done > 0 && t.elapsed_seconds > 0) {
    return left / (t.samples_done / t.elapsed_seconds);
  }
  if (t.samples_per_second > 0) {
    return std::max(0.0, t.samples / t.samples_per_second - t.elapsed_seconds);
  }
  return -1;
}

double BackupUrgency(const RunningTask& t, double backup_samples_per_second,
                     const BackupPolicy& policy) {
  if (t.samples <= 0 || t.elapsed_seconds < policy.margin_seconds) return 0;
  if (t.samples_per_second > 0) {
    const double predicted = t.samples / t.samples_per_second;
    if (t.elapsed_seconds > policy.slowdown * predicted + policy.margin_seconds) {
      // Stalled (computing, or done and not reporting): whatever its progress says,
      // it is late; the most overdue goes first.
      return std::numeric_limits<double>::max() / 2 + t.elapsed_seconds;
    }
  }
  if (backup_samples_per_second <= 0) return 0;
  const double left = SecondsLeft(t);
  const double copy = t.samples / backup_samples_per_second;
  if (left > policy.slowdown * copy + policy.margin_seconds) return left;
  return 0;
}

}  // namespace qcal::server
