// The sizing and backup policy on figures from the runs (llama-small,
// 1,024 samples of 256 tokens, about 28 samples/s per worker).
#include "server/core/scheduling.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace qcal::server {
namespace {

TEST(TaskShards, OneShardUntilASpeedIsMeasured) {
  EXPECT_EQ(TaskShards(64, 2, 16, 0, 30), 1);
  EXPECT_EQ(TaskShards(1, 5, 16, 100, 30), 1);
}

TEST(TaskShards, NeverMoreThanTheShareOfEachLiveWorker) {
  // 1,024 samples in shards of 16, first shard done, 28 samples/s, 30 s interval:
  // the interval alone allows 52 shards (the whole job); two workers get half each.
  EXPECT_EQ(TaskShards(63, 2, 16, 28, 30), 32);
  EXPECT_EQ(TaskShards(31, 2, 16, 28, 30), 16);
  EXPECT_EQ(TaskShards(63, 1, 16, 28, 30), 52);
  EXPECT_EQ(TaskShards(10, 1, 16, 28, 30), 10);
  // The report interval stays the upper bound.
  EXPECT_EQ(TaskShards(1000, 2, 16, 28, 1), 1);
  EXPECT_EQ(TaskShards(1000, 2, 4, 28, 1), 7);
  // The tail shrinks to one shard for every worker.
  EXPECT_EQ(TaskShards(3, 8, 16, 28, 30), 1);
  // No live worker counted (e.g. all just expired): as if one.
  EXPECT_EQ(TaskShards(8, 0, 1, 100, 30), 8);
}

TEST(TaskShards, TwoEqualWorkersFinishWithinAShardOfEachOther) {
  // Each worker leases when it is free; a shard takes one time unit. Worker 0 has
  // just finished a first one-shard task, worker 1 leases first.
  int64_t pending = 63;
  int64_t free_at[2] = {1, 0}, shards[2] = {1, 0};
  while (pending > 0) {
    const int w = free_at[1] <= free_at[0] ? 1 : 0;
    const int64_t n = TaskShards(pending, 2, 16, 28, 30);
    pending -= n;
    shards[w] += n;
    free_at[w] += n;
  }
  EXPECT_EQ(shards[0] + shards[1], 64);
  EXPECT_LE(std::abs(free_at[0] - free_at[1]), 1) << free_at[0] << " vs " << free_at[1];
}

TEST(SecondsLeft, FromProgressThenFromTheWorkersSpeed) {
  // 100 samples, 20 done in 10 s: 2 samples/s, 40 s left.
  EXPECT_DOUBLE_EQ(SecondsLeft({100, 20, 10, 50}), 40);
  // No progress yet: the worker's speed (10 samples/s) predicts 10 s, 4 s elapsed.
  EXPECT_DOUBLE_EQ(SecondsLeft({100, 0, 4, 10}), 6);
  EXPECT_DOUBLE_EQ(SecondsLeft({100, 0, 40, 10}), 0);
  EXPECT_LT(SecondsLeft({100, 0, 4, 0}), 0);
}

TEST(BackupUrgency, AStalledTaskIsBackedUpFirst) {
  // Predicted 10 s at 10 samples/s; backed up after 1.5 x 10 + 1 = 16 s.
  EXPECT_EQ(BackupUrgency({100, 0, 15.9, 10}, 10), 0);
  const double stalled = BackupUrgency({100, 0, 16.1, 10}, 10);
  EXPECT_GT(stalled, 0);
  // Even one that reported all its samples but not its result.
  EXPECT_GT(BackupUrgency({100, 100, 16.1, 10}, 10), 0);
  // Ahead of any slow-but-moving task.
  EXPECT_GT(stalled, BackupUrgency({100, 1, 10, 0.1}, 100));
}

TEST(BackupUrgency, ASlowWorkerIsBackedUpWhenTheCopyFinishesClearlyEarlier) {
  // 100 samples, 10 done in 10 s (1 sample/s): 90 s left. A copy at 10 samples/s
  // takes 10 s: backed up. At 1.5 samples/s it takes 67 s: 90 > 1.5 x 67 + 1 fails.
  EXPECT_DOUBLE_EQ(BackupUrgency({100, 10, 10, 1}, 10), 90);
  EXPECT_EQ(BackupUrgency({100, 10, 10, 1}, 1.5), 0);
  // A task on track at the same speed as the idle worker: no backup.
  EXPECT_EQ(BackupUrgency({100, 50, 5, 10}, 10), 0);
  // Nothing measured anywhere: no backup; and never in the first second.
  EXPECT_EQ(BackupUrgency({100, 0, 100, 0}, 0), 0);
  EXPECT_EQ(BackupUrgency({100, 0, 0.5, 1000}, 1000), 0);
}

}  // namespace
}  // namespace qcal::server
