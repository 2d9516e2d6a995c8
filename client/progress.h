// How `submit --wait`, `watch` and `run` show a job while it runs.
//
//   terminal (stdout is a tty): one line redrawn in place with '\r', e.g.
//     job-000001-3f2a RUNNING [#########...............] 12/32 shards  384/1024 samples  15.2k tok/s  1m23s
//   otherwise: a plain line each time the state or the counts change, e.g.
//     job-000001-3f2a RUNNING shards 12/32 samples 384/1024 tokens 196608 tok/s 15.2k elapsed 1m23s
//   --json: every Job received, one JSON object per line.
// In every mode the last thing printed is the final state.
#ifndef QCAL_CLIENT_PROGRESS_H_
#define QCAL_CLIENT_PROGRESS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/live_line.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

// "JOB_RUNNING" -> "RUNNING".
std::string ShortStateName(v1::JobState state);

// "0s", "59s", "1m05s", "2h03m04s" (whole seconds, negative shown as 0s).
std::string FormatElapsed(absl::Duration d);
// "980", "15.2k", "1.24M" (3 significant digits above 1000).
std::string FormatCount(double value);
// "[#####.....]" of `width` cells inside the brackets; done/total clamped to [0, 1];
// total <= 0 shows an empty bar.
std::string FormatBar(int64_t done, int64_t total, int width);

// Numbers the display shows besides the Job itself.
struct ProgressFigures {
  absl::Duration elapsed;
  // Tokens per second; nullopt while unknown (shown as "-").
  std::optional<double> tokens_per_second;
};

// The terminal line (no '\r', no newline).
std::string FormatProgressLine(const v1::Job& job, const ProgressFigures& figures);
// The plain line (no newline).
std::string FormatPlainLine(const v1::Job& job, const ProgressFigures& figures);
// The closing line, e.g. "job-1 CALIBRATED: 1024 samples, 524288 tokens in 2m03s"
// or "job-1 FAILED after 1m02s: <error>".
std::string FormatFinalLine(const v1::Job& job, const ProgressFigures& figures);

// Shows successive versions of one job. Update() and Tick() may be called from
// different threads (the watcher and a timer); output is serialized.
class JobDisplay {
 public:
  // `out` must outlive the display. `now` is injectable for tests.
  JobDisplay(std::ostream* out, DisplayMode mode);

  // A new version of the job, received at `now`.
  void Update(const v1::Job& job, absl::Time now = absl::Now());
  // Terminal mode: redraws the line so the clock moves (at most once a second).
  void Tick(absl::Time now = absl::Now());
  // Ends the display after the final Job (or an error): terminal mode prints the
  // last line and a newline; terminal and plain modes then print FormatFinalLine
  // when the job is final. Idempotent.
  void Finish(absl::Time now = absl::Now());

  // The figures for `job` at `now` given what was seen so far (for tests).
  ProgressFigures Figures(const v1::Job& job, absl::Time now) const;

 private:
  ProgressFigures FiguresLocked(const v1::Job& job, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  DisplayLines LinesLocked(const v1::Job& job, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  LiveLine line_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Job> job_ ABSL_GUARDED_BY(mu_);
  // The first observation: tokens/s is measured from it.
  absl::Time first_seen_ ABSL_GUARDED_BY(mu_);
  int64_t first_tokens_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qcal::client

#endif  // QCAL_CLIENT_PROGRESS_H_
