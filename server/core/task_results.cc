// Coordinator::CompleteTask: a task's report applied exactly once, for every kind
// of work (work_kind.h checks and finishes it; this file owns the lease rules).
//
// Three phases: identify the task and copy the layout its report must have (under
// the lock); check the whole report (without it); re-check that the lease is still
// current and apply everything in one WriteBatch (under it).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/coordinator.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

// The refusal of a report whose task lost the race with its backup (or original).
absl::Status Superseded(const v1::TaskRecord& t) {
  return absl::FailedPreconditionError(absl::StrCat(
      "task ", t.task_id(), " was superseded: task ", t.superseded_by(),
      " ran the same shards and reported first; this report was refused"));
}

}  // namespace

absl::StatusOr<v1::CompleteTaskResponse> Coordinator::CompleteTask(
    const v1::CompleteTaskHeader& header, const std::vector<v1::LinearStatsProto>& linears,
    const google::protobuf::Any* result) {
  QCAL_RETURN_IF_ERROR(CheckRoomFor("reports"));
  const absl::Time start = absl::Now();
  ReportLayout layout;
  const WorkKind* kind = nullptr;
  {
    absl::MutexLock lock(&mu_);
    QCAL_ASSIGN_OR_RETURN(v1::TaskRecord * t, ReportedLeaseLocked(header));
    const JobView& j = jobs_.at(t->job_id());
    kind = &KindOf(j.record);
    layout.task_id = t->task_id();
    layout.samples = kind->SamplesOfShards(j.record, t->shard_begin(), t->shard_end());
    layout.units = t->shard_end() - t->shard_begin();
    layout.tokens_per_sample = kind->TokensPerSample(j.record);
    if (kind->reports_statistics()) {
      layout.names.assign(j.record.linear_names().begin(), j.record.linear_names().end());
      layout.in.assign(j.record.linear_in().begin(), j.record.linear_in().end());
      layout.out.assign(j.record.linear_out().begin(), j.record.linear_out().end());
    }
  }
  if (header.samples() != layout.samples) {
    return absl::InvalidArgumentError(absl::StrCat("report covers ", header.samples(),
                                                   " samples; task ", header.task_id(), " has ",
                                                   layout.samples));
  }
  QCAL_ASSIGN_OR_RETURN(CheckedReport checked, kind->CheckReport(layout, header, linears, result));
  v1::CompleteTaskResponse resp;
  std::string job_id;
  {
    absl::MutexLock lock(&mu_);
    QCAL_ASSIGN_OR_RETURN(v1::TaskRecord * t, ReportedLeaseLocked(header));
    job_id = t->job_id();
    QCAL_RETURN_IF_ERROR(ApplyReportLocked(header, checked, *t));
    resp.set_job_state(jobs_.at(job_id).record.job().state());
    if (metrics_) {
      metrics_->Report(checked.bytes);
      metrics_->TokensProcessed(header.tokens());
      metrics_->MergeLatency(absl::ToDoubleSeconds(absl::Now() - start));
    }
    UpdateGauges();
  }
  Notify({job_id});
  return resp;
}

absl::StatusOr<v1::TaskRecord*> Coordinator::ReportedLeaseLocked(
    const v1::CompleteTaskHeader& header) {
  auto it = tasks_.find(header.task_id());
  if (it == tasks_.end()) {
    QCAL_ASSIGN_OR_RETURN(auto stored, store_->Get(Family::kTasks, header.task_id()));
    if (!stored) return absl::NotFoundError(absl::StrCat("no task \"", header.task_id(), "\""));
    v1::TaskRecord rec;
    if (!rec.ParseFromString(*stored)) return Corrupt("tasks/" + header.task_id());
    if (rec.state() == v1::TASK_DONE && rec.lease_id() == header.lease_id()) {
      return absl::AlreadyExistsError(absl::StrCat("task ", header.task_id(),
                                                   " was already completed with this lease"));
    }
    if (metrics_) metrics_->StaleReport();
    if (!rec.superseded_by().empty()) return Superseded(rec);
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", header.task_id(), " is ", v1::TaskState_Name(rec.state()),
        "; the report under lease ", header.lease_id(), " was refused (not current)"));
  }
  v1::TaskRecord* t = &it->second;
  if (t->lease_id() != header.lease_id() || t->worker_id() != header.worker_id()) {
    if (metrics_) metrics_->StaleReport();
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", header.lease_id(), " of task ", header.task_id(), " is not current"));
  }
  if (t->state() == v1::TASK_CANCELLED) {
    if (!t->superseded_by().empty()) {
      if (metrics_) metrics_->StaleReport();
      return Superseded(*t);
    }
    return absl::FailedPreconditionError(
        absl::StrCat("job of task ", header.task_id(), " was cancelled; result dropped"));
  }
  const JobView& j = jobs_.at(t->job_id());
  if (IsFinal(j.record.job().state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", t->job_id(), " is already ", v1::JobState_Name(j.record.job().state())));
  }
  return t;
}

absl::Status Coordinator::ApplyReportLocked(const v1::CompleteTaskHeader& header,
                                            const CheckedReport& checked, v1::TaskRecord& leased) {
  v1::TaskRecord t = leased;
  JobView& j = jobs_.at(t.job_id());
  const absl::Time now = options_.now();
  WriteBatch b;
  // The first report of a task and its backup wins; the other lease ends here.
  if (v1::TaskRecord* sibling = SiblingLocked(t); sibling != nullptr) {
    sibling->set_state(v1::TASK_CANCELLED);
    sibling->set_superseded_by(t.task_id());
    PutTask(b, *sibling);
  }
  for (size_t i = 0; i < checked.stats_operands.size(); ++i) {
    b.Merge(Family::kStats, StatsKey(t.job_id(), static_cast<int64_t>(i)), checked.stats_operands[i]);
  }
  for (int64_t s = t.shard_begin(); s < t.shard_end(); ++s) {
    j.shards[s].set_state(v1::SHARD_DONE);
    j.shards[s].set_task_id(t.task_id());
    if (!checked.unit_results.empty()) j.shards[s].set_result(checked.unit_results[s - t.shard_begin()]);
    PutShard(b, t.job_id(), s, j.shards[s]);
  }
  t.set_state(v1::TASK_DONE);
  t.set_samples_done(header.samples());
  PutTask(b, t);
  leased.set_state(v1::TASK_DONE);  // for Touch; restored if the write fails
  CountReportLocked(j, t, header, now);
  const v1::JobProgress& p = j.record.job().progress();
  if (p.shards_done() == p.shards_total()) {
    const WorkKind& kind = KindOf(j.record);
    absl::Status fin = kind.Finish(j.record, j.shards, checked);
    if (fin.ok()) {
      j.record.mutable_job()->set_state(DoneState(kind));
    } else {
      FailJob(j, std::string(fin.message()));
    }
  }
  Touch(j);
  PutJob(b, j);
  QCAL_RETURN_IF_ERROR(WriteOrReload(b, t.job_id()));
  // The loser of a backup race stays (TASK_CANCELLED) until its lease runs out,
  // so that its heartbeats say cancelled and its report is refused by name.
  tasks_.erase(t.task_id());
  WorkerTaskEndedLocked(t.worker_id(), now, static_cast<double>(header.samples()),
                        header.compute_seconds());
  if (metrics_ && !t.backup_of().empty()) metrics_->BackupWon();
  return absl::OkStatus();
}

void Coordinator::CountReportLocked(JobView& j, const v1::TaskRecord& t,
                                    const v1::CompleteTaskHeader& header, absl::Time now) {
  v1::JobProgress* p = j.record.mutable_job()->mutable_progress();
  p->set_shards_done(p->shards_done() + (t.shard_end() - t.shard_begin()));
  p->set_samples_done(p->samples_done() + header.samples());
  p->set_tokens_done(p->tokens_done() + header.tokens());
  if (!t.backup_of().empty()) p->set_backup_wins(p->backup_wins() + 1);
  v1::WorkerShare* share = ShareLocked(j, t.worker_id(), now);
  share->set_tasks_done(share->tasks_done() + 1);
  share->set_samples_done(share->samples_done() + header.samples());
  *share->mutable_last_report_time() = ToProto(now);
  if (header.compute_seconds() > 0) {
    const double sps = header.samples() / header.compute_seconds();
    j.record.set_samples_per_second(MovingAverage(j.record.samples_per_second(), sps));
    share->set_samples_per_second(MovingAverage(share->samples_per_second(), sps));
  }
}

}  // namespace qcal::server
