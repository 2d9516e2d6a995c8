#include "client/job_view.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/columns.h"
#include "client/exit_codes.h"
#include "client/progress.h"

namespace qcal::client {
namespace {

std::string Progress(const v1::JobProgress& p) {
  if (p.shards_total() <= 0) return "-";
  const int64_t percent = p.shards_done() * 100 / p.shards_total();
  return absl::StrCat(p.shards_done(), "/", p.shards_total(), " (", percent, "%)");
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

absl::StatusOr<v1::JobState> ParseJobState(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (upper.rfind("JOB_", 0) != 0) upper = "JOB_" + upper;
  v1::JobState state;
  if (upper != "JOB_STATE_UNSPECIFIED" && v1::JobState_Parse(upper, &state)) {
    return state;
  }
  return UsageError(absl::StrCat("--state must be pending, running, calibrated, failed "
                                 "or cancelled (got \"",
                                 name, "\")"));
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

std::string FormatJobDetails(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  const v1::SamplingOptions& s = spec.sampling();
  const v1::JobProgress& p = job.progress();
  std::string out = absl::StrCat("job:        ", job.id(), "\n",
                                 "state:      ", ShortStateName(job.state()), "\n");
  if (!spec.display_name().empty()) absl::StrAppend(&out, "name:       ", spec.display_name(), "\n");
  absl::StrAppend(&out, "model:      ", spec.model());
  if (!job.resolved_model().empty() && job.resolved_model() != spec.model()) {
    absl::StrAppend(&out, " (", job.resolved_model(), ")");
  }
  if (!job.architecture().empty()) {
    absl::StrAppend(&out, " [", job.architecture(), ", ", job.linear_modules(),
                    " linear modules]");
  }
  absl::StrAppend(&out, "\ncorpus:     ", spec.corpus());
  if (!job.resolved_corpus().empty() && job.resolved_corpus() != spec.corpus()) {
    absl::StrAppend(&out, " (", job.resolved_corpus(), ")");
  }
  absl::StrAppend(&out, "\nsampling:   num_samples ", s.num_samples(), ", seq_len ",
                  s.seq_len(), ", mode ", OrDash(s.mode()), ", order ", OrDash(s.order()),
                  ", seed ", s.seed(), ", skip_docs ", s.skip_docs(),
                  s.skip_bad_lines() ? ", skip_bad_lines" : "", "\n");
  absl::StrAppend(&out, "shards:     ", p.shards_done(), "/", p.shards_total(), " done, ",
                  p.shards_leased(), " leased (shard_size ", spec.shard_size(),
                  ", batch_size ", spec.batch_size(), ")\n");
  absl::StrAppend(&out, "samples:    ", p.samples_done(), "/", p.samples_total(), "\n",
                  "tokens:     ", p.tokens_done(), "\n");
  if (p.workers_size() > 0) {
    absl::StrAppend(&out, "workers:    ", p.workers_active(), " working now, ", p.workers_size(),
                    " took part");
    if (p.backup_tasks() > 0) {
      absl::StrAppend(&out, "; ", p.backup_tasks(), " backup task",
                      p.backup_tasks() == 1 ? "" : "s", " for stragglers, ", p.backup_wins(),
                      " won");
    }
    absl::StrAppend(&out, "\n");
    for (const v1::WorkerShare& w : p.workers()) {
      absl::StrAppend(&out, "            ", w.name().empty() ? w.worker_id() : w.name(),
                      w.active() ? " (working)" : "", ": ", w.samples_done(), " samples in ",
                      w.tasks_done(), " task", w.tasks_done() == 1 ? "" : "s",
                      absl::StrFormat(", %.1f samples/s", w.samples_per_second()), "\n");
    }
  }
  if (p.lease_expiries() > 0 || p.stale_reports() > 0) {
    absl::StrAppend(&out, "recoveries: ", p.lease_expiries(), " lease expiries, ",
                    p.stale_reports(), " stale reports\n");
  }
  absl::StrAppend(&out, "created:    ", FormatTimestamp(job.create_time()), "\n",
                  "updated:    ", FormatTimestamp(job.update_time()), "\n");
  if (!job.error().empty()) absl::StrAppend(&out, "error:      ", job.error(), "\n");
  for (const std::string& reason : job.failure_reasons()) {
    absl::StrAppend(&out, "failure:    ", reason, "\n");
  }
  return out;
}

std::string FormatJobTable(const google::protobuf::RepeatedPtrField<v1::Job>& jobs) {
  if (jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "NAME", "STATE", "PROGRESS", "MODEL", "CREATED"});
  for (const v1::Job& job : jobs) {
    rows.push_back({job.id(), OrDash(job.spec().display_name()),
                    ShortStateName(job.state()), Progress(job.progress()),
                    OrDash(job.spec().model()), FormatTimestamp(job.create_time())});
  }
  return FormatColumns(rows);
}

}  // namespace qcal::client
