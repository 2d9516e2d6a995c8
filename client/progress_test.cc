#include "client/progress.h"

#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "proto/qcal/v1/job_state.h"

namespace qcal::client {
namespace {

v1::Job Job(v1::JobState state, int64_t done, int64_t total) {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(state);
  job.mutable_progress()->set_shards_done(done);
  job.mutable_progress()->set_shards_total(total);
  job.mutable_progress()->set_samples_done(done * 32);
  job.mutable_progress()->set_samples_total(total * 32);
  job.mutable_progress()->set_tokens_done(done * 32 * 512);
  job.mutable_create_time()->set_seconds(1000);
  job.mutable_update_time()->set_seconds(1000 + done * 5);
  return job;
}

absl::Time At(int64_t seconds) { return absl::FromUnixSeconds(seconds); }

TEST(ProgressTest, Formatting) {
  EXPECT_EQ(FormatElapsed(absl::Seconds(0)), "0s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(59.9)), "59s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(65)), "1m05s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(7384)), "2h03m04s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(-3)), "0s");
  EXPECT_EQ(FormatCount(0), "0");
  EXPECT_EQ(FormatCount(980.4), "980");
  EXPECT_EQ(FormatCount(15234), "15.2k");
  EXPECT_EQ(FormatCount(999'600), "1.00M");
  EXPECT_EQ(FormatCount(1'240'000), "1.24M");
  EXPECT_EQ(FormatCount(123'456'789), "123M");
  EXPECT_EQ(FormatCount(-1), "-");
  EXPECT_EQ(FormatBar(0, 4, 8), "[........]");
  EXPECT_EQ(FormatBar(1, 4, 8), "[##......]");
  EXPECT_EQ(FormatBar(4, 4, 8), "[########]");
  EXPECT_EQ(FormatBar(9, 4, 8), "[########]");
  EXPECT_EQ(FormatBar(3, 0, 4), "[....]");
  EXPECT_EQ(ShortStateName(v1::JOB_RUNNING), "RUNNING");
  EXPECT_TRUE(v1::IsFinalJobState(v1::JOB_CANCELLED));
  EXPECT_FALSE(v1::IsFinalJobState(v1::JOB_PENDING));
}

TEST(ProgressTest, Lines) {
  const v1::Job job = Job(v1::JOB_RUNNING, 12, 32);
  ProgressFigures f{absl::Seconds(83), 15234.0};
  EXPECT_EQ(FormatProgressLine(job, f),
            "job-1 RUNNING [#########...............] 12/32 shards  384/1024 samples  "
            "15.2k tok/s  1m23s");
  EXPECT_EQ(FormatPlainLine(job, f),
            "job-1 RUNNING shards 12/32 samples 384/1024 tokens 196608 tok/s 15.2k "
            "elapsed 1m23s");
  f.tokens_per_second.reset();
  EXPECT_EQ(FormatPlainLine(job, f),
            "job-1 RUNNING shards 12/32 samples 384/1024 tokens 196608 tok/s - "
            "elapsed 1m23s");

  v1::Job failed = Job(v1::JOB_FAILED, 3, 32);
  failed.add_failure_reasons("first");
  failed.add_failure_reasons("second\nline");
  EXPECT_EQ(FormatFinalLine(failed, f), "job-1 FAILED after 1m23s: second line");
  failed.set_error("boom");
  EXPECT_EQ(FormatFinalLine(failed, f), "job-1 FAILED after 1m23s: boom");
  EXPECT_EQ(FormatFinalLine(Job(v1::JOB_CANCELLED, 3, 32), f),
            "job-1 CANCELLED after 1m23s (3/32 shards done)");
  f.tokens_per_second = 2000;
  EXPECT_EQ(FormatFinalLine(Job(v1::JOB_CALIBRATED, 32, 32), f),
            "job-1 CALIBRATED: 1024 samples, 524288 tokens in 1m23s (2.00k tok/s)");
}

TEST(ProgressTest, FiguresUseServerTimesAndMeasuredRate) {
  std::ostringstream out;
  JobDisplay display(&out, DisplayMode::kPlain);
  display.Update(Job(v1::JOB_RUNNING, 1, 4), At(1010));
  // Elapsed since create_time; no rate before a second of watching.
  ProgressFigures f = display.Figures(Job(v1::JOB_RUNNING, 1, 4), At(1010));
  EXPECT_EQ(f.elapsed, absl::Seconds(10));
  EXPECT_FALSE(f.tokens_per_second.has_value());
  // 16384 more tokens in 4 s of watching.
  f = display.Figures(Job(v1::JOB_RUNNING, 2, 4), At(1014));
  ASSERT_TRUE(f.tokens_per_second.has_value());
  EXPECT_DOUBLE_EQ(*f.tokens_per_second, 16384 / 4.0);
  // A final job: elapsed and rate from create_time to update_time.
  f = display.Figures(Job(v1::JOB_CALIBRATED, 4, 4), At(5000));
  EXPECT_EQ(f.elapsed, absl::Seconds(20));
  EXPECT_DOUBLE_EQ(*f.tokens_per_second, 65536 / 20.0);
}

TEST(ProgressTest, PlainModePrintsOnlyChanges) {
  std::ostringstream out;
  JobDisplay display(&out, DisplayMode::kPlain);
  display.Update(Job(v1::JOB_PENDING, 0, 4), At(1000));
  display.Update(Job(v1::JOB_PENDING, 0, 4), At(1001));  // e.g. only leases changed
  display.Update(Job(v1::JOB_RUNNING, 1, 4), At(1005));
  display.Tick(At(1009));  // never in plain mode
  display.Update(Job(v1::JOB_CALIBRATED, 4, 4), At(1020));
  display.Finish(At(1021));
  display.Finish(At(1022));
  EXPECT_EQ(out.str(),
            "job-1 PENDING shards 0/4 samples 0/128 tokens 0 tok/s - elapsed 0s\n"
            "job-1 RUNNING shards 1/4 samples 32/128 tokens 16384 tok/s 3.28k elapsed 5s\n"
            "job-1 CALIBRATED shards 4/4 samples 128/128 tokens 65536 tok/s 3.28k "
            "elapsed 20s\n"
            "job-1 CALIBRATED: 128 samples, 65536 tokens in 20s (3.28k tok/s)\n");
}

TEST(ProgressTest, TerminalModeRedrawsInPlace) {
  std::ostringstream out;
  JobDisplay display(&out, DisplayMode::kTerminal);
  display.Update(Job(v1::JOB_RUNNING, 10, 32), At(1050));
  const std::string first = out.str();
  EXPECT_EQ(first[0], '\r');
  display.Tick(At(1050));  // less than a second: nothing
  EXPECT_EQ(out.str(), first);
  display.Tick(At(1052));  // the clock moves
  EXPECT_NE(out.str(), first);
  EXPECT_EQ(out.str().find('\n'), std::string::npos);
  // A shorter line is padded so nothing of the longer one stays visible.
  out.str("");
  display.Update(Job(v1::JOB_RUNNING, 1, 2), At(1053));
  const std::string redraw = out.str();
  EXPECT_EQ(redraw.back(), ' ');
  display.Update(Job(v1::JOB_CANCELLED, 1, 2), At(1054));
  out.str("");
  display.Finish(At(1055));
  const std::string end = out.str();
  EXPECT_EQ(end.rfind("\rjob-1 CANCELLED [############", 0), 0u) << end;
  EXPECT_NE(end.find("\njob-1 CANCELLED after 5s (1/2 shards done)\n"), std::string::npos)
      << end;
}

TEST(ProgressTest, JsonModePrintsEveryVersion) {
  std::ostringstream out;
  JobDisplay display(&out, DisplayMode::kJson);
  display.Update(Job(v1::JOB_PENDING, 0, 4), At(1000));
  display.Update(Job(v1::JOB_PENDING, 0, 4), At(1001));
  display.Finish(At(1002));
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_EQ(text.rfind("{\"id\":\"job-1\"", 0), 0u) << text;
}

}  // namespace
}  // namespace qcal::client
