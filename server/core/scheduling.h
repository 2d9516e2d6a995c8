// How LeaseTask spreads work: task sizing and backup tasks for stragglers. Pure
// functions of measured figures, so the policy is tested without a coordinator.
//
// Sizing is guided self-scheduling (Polychronopoulos & Kuck, 1987): a task takes
// the pending shards divided over the live workers, rounded up, capped by what
// fills the job's report interval at the measured speed. Tasks shrink as the job
// nears its end, every live worker gets a share, and all of them finish at about
// the same time.
//
// Backups are MapReduce's answer to stragglers, chosen as in LATE (Zaharia et al.,
// OSDI 2008): when nothing is left to lease, an idle worker runs again the task
// with the most time left, if the copy is expected to finish clearly earlier.
#ifndef QCAL_SERVER_CORE_SCHEDULING_H_
#define QCAL_SERVER_CORE_SCHEDULING_H_

#include <cstdint>

namespace qcal::server {

// Shards for the next task of a job with `pending_shards` unleased shards (>= 1),
// `live_workers` workers able to take them, `shard_size` samples per shard and a
// measured speed of `samples_per_second` (0: not measured yet, one shard). At least
// 1, at most `pending_shards`.
int64_t TaskShards(int64_t pending_shards, int64_t live_workers, int64_t shard_size,
                   double samples_per_second, double report_interval_seconds);

// A leased task as the coordinator sees it.
struct RunningTask {
  int64_t samples = 0;       // samples it covers (> 0)
  int64_t samples_done = 0;  // as of its worker's last heartbeat
  double elapsed_seconds = 0;
  // Its worker's measured speed; the job's when the worker has none; 0: unknown.
  double samples_per_second = 0;
};

struct BackupPolicy {
  // A task is a straggler when it needs more than `slowdown` times the expected
  // time, plus `margin_seconds` (so that short tasks are not copied for jitter).
  double slowdown = 1.5;
  double margin_seconds = 1.0;
};

// Seconds `t` still needs: from its own progress rate once a heartbeat reported
// progress, else from its worker's speed (never below 0); negative when neither is
// known.
double SecondsLeft(const RunningTask& t);

// How urgent a backup of `t` on an idle worker running `backup_samples_per_second`
// is: 0 when none is worth starting, else larger for the task that holds the job up
// more. A backup is worth it when `t` has run past slowdown x what its worker's
// speed predicts + margin (it stalled), or when it needs more than slowdown x the
// time the copy would take from scratch + margin (its worker is slow).
double BackupUrgency(const RunningTask& t, double backup_samples_per_second,
                     const BackupPolicy& policy = {});

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_SCHEDULING_H_
