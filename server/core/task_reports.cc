// Coordinator: the worker API besides leasing (leasing.cc): registration,
// heartbeats, results applied exactly once, failures and lease expiry.
#include <cmath>
#include "server/core/coordinator.h"

#include "absl/strings/str_cat.h"
#include "common/stats/stats_proto.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

// The refusal of a report whose task lost the race with its backup (or original).
absl::Status Superseded(const v1::TaskRecord& t) {
  return absl::FailedPreconditionError(absl::StrCat(
      "task ", t.task_id(), " was superseded: task ", t.superseded_by(),
      " ran the same shards and reported first; this report was refused"));
}

}  // namespace

absl::StatusOr<v1::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const v1::RegisterWorkerRequest& r) {
  if (r.name().size() > 256) return absl::InvalidArgumentError("worker name is longer than 256 bytes");
  absl::MutexLock lock(&mu_);
  v1::RegisterWorkerResponse resp;
  resp.set_worker_id(NewId("w-"));
  resp.set_heartbeat_interval_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  WorkerView& w = workers_[resp.worker_id()];
  w.name = r.name();
  w.last_seen = w.idle_since = options_.now();
  UpdateGauges();
  return resp;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(const v1::HeartbeatRequest& r) {
  absl::MutexLock lock(&mu_);
  if (auto w = workers_.find(r.worker_id()); w != workers_.end()) w->second.last_seen = options_.now();
  auto it = tasks_.find(r.task_id());
  if (it == tasks_.end()) {
    QCAL_ASSIGN_OR_RETURN(auto stored, store_->Get(Family::kTasks, r.task_id()));
    if (!stored) return absl::NotFoundError(absl::StrCat("no task \"", r.task_id(), "\""));
    return absl::FailedPreconditionError(
        absl::StrCat("task ", r.task_id(), " is no longer leased (expired, failed or done)"));
  }
  v1::TaskRecord& t = it->second;
  if (t.lease_id() != r.lease_id() || t.worker_id() != r.worker_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", r.lease_id(), " of task ", r.task_id(), " is not current"));
  }
  v1::HeartbeatResponse resp;
  const JobView& j = jobs_.at(t.job_id());
  if (t.state() == v1::TASK_CANCELLED || IsFinal(j.record.job().state())) {
    resp.set_cancelled(true);
    resp.set_reason(!t.superseded_by().empty()
                        ? absl::StrCat("superseded: task ", t.superseded_by(),
                                       " ran the same shards and reported first")
                        : absl::StrCat("job ", j.record.job().id(), " is ",
                                       v1::JobState_Name(j.record.job().state())));
    *resp.mutable_lease_deadline() = TimeUtil::MillisecondsToTimestamp(t.deadline_ms());
    return resp;
  }
  v1::TaskRecord next = t;
  next.set_deadline_ms(ToMs(options_.now() + options_.lease_duration));
  next.set_samples_done(r.samples_done());
  WriteBatch b;
  PutTask(b, next);
  QCAL_RETURN_IF_ERROR(store_->Write(b));
  t = next;
  *resp.mutable_lease_deadline() = TimeUtil::MillisecondsToTimestamp(t.deadline_ms());
  return resp;
}

absl::StatusOr<v1::CompleteTaskResponse> Coordinator::CompleteTask(
    const v1::CompleteTaskHeader& header, const std::vector<v1::LinearStatsProto>& linears,
    const google::protobuf::Any* result) {
  const absl::Time start = absl::Now();
  // Phase 1 (locked): identify the task and the layout its result must have.
  std::vector<std::string> names;
  std::vector<int64_t> in, out;
  std::string job_id;
  int64_t expected_samples = 0;
  bool eval = false;
  bool is_export = false;
  int64_t units = 0;
  auto check_lease = [&](const v1::TaskRecord* t) -> absl::Status {
    if (t == nullptr) {
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
    return absl::OkStatus();
  };
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(header.task_id());
    QCAL_RETURN_IF_ERROR(check_lease(it == tasks_.end() ? nullptr : &it->second));
    const JobView& j = jobs_.at(it->second.job_id());
    job_id = it->second.job_id();
    names.assign(j.record.linear_names().begin(), j.record.linear_names().end());
    in.assign(j.record.linear_in().begin(), j.record.linear_in().end());
    out.assign(j.record.linear_out().begin(), j.record.linear_out().end());
    expected_samples = SamplesOfShards(j, it->second.shard_begin(), it->second.shard_end());
    eval = j.record.kind() == v1::JOB_KIND_EVALUATE;
    is_export = j.record.kind() == v1::JOB_KIND_EXPORT;
    units = it->second.shard_end() - it->second.shard_begin();
  }
  // Phase 2 (unlocked): validate the whole result before anything is written.
  if (header.samples() != expected_samples) {
    return absl::InvalidArgumentError(absl::StrCat("report covers ", header.samples(),
                                                   " samples; task ", header.task_id(), " has ",
                                                   expected_samples));
  }
  v1::EvaluateResult eval_result;
  if (eval) {
    if (!linears.empty() || result == nullptr || !result->UnpackTo(&eval_result)) {
      return absl::InvalidArgumentError("an evaluation report carries one EvaluateResult and no statistics");
    }
    if (eval_result.shards_size() != units) {
      return absl::InvalidArgumentError(absl::StrCat("evaluation report has ", eval_result.shards_size(),
                                                     " shard results; the task has ", units));
    }
    for (const auto& p : eval_result.shards()) {
      if (p.hits() < 0 || p.total() < p.hits() || p.predictions() < 0 || !std::isfinite(p.nll_sum()) ||
          p.nll_sum() < 0) {
        return absl::InvalidArgumentError("evaluation report has inconsistent counts");
      }
    }
  }
  v1::ExportResponse export_result;
  if (is_export) {
    if (!linears.empty() || result == nullptr || !result->UnpackTo(&export_result)) {
      return absl::InvalidArgumentError("an export report carries one ExportResponse and no statistics");
    }
    names.clear();
  }
  const bool calibrate = !eval && !is_export;
  if (calibrate && header.tokens() <= 0) return absl::InvalidArgumentError("report has no tokens");
  if (calibrate && linears.size() != names.size()) {
    return absl::InvalidArgumentError(absl::StrCat("report has ", linears.size(),
                                                   " linear modules; the model has ", names.size()));
  }
  std::vector<std::string> operands(names.size());
  int64_t bytes = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const v1::LinearStatsProto& l = linears[i];
    if (l.name() != names[i]) {
      return absl::InvalidArgumentError(absl::StrCat("report linear ", i, " is \"", l.name(),
                                                     "\", expected \"", names[i], "\""));
    }
    auto input = stats::TensorStatsFromProto(l.input(), l.name() + " input");
    if (!input.ok()) return input.status();
    auto output = stats::TensorStatsFromProto(l.output(), l.name() + " output");
    if (!output.ok()) return output.status();
    if (input->channels() != in[i] || output->channels() != out[i]) {
      return absl::InvalidArgumentError(absl::StrCat("report linear \"", l.name(),
                                                     "\" has the wrong channel count"));
    }
    operands[i] = l.SerializeAsString();
    bytes += static_cast<int64_t>(operands[i].size());
  }
  // Phase 3 (locked): the lease must still be current; apply in one batch.
  std::set<std::string> changed;
  v1::CompleteTaskResponse resp;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(header.task_id());
    QCAL_RETURN_IF_ERROR(check_lease(it == tasks_.end() ? nullptr : &it->second));
    v1::TaskRecord t = it->second;
    JobView& j = jobs_.at(job_id);
    if (IsFinal(j.record.job().state())) {
      return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is already ",
                                                        v1::JobState_Name(j.record.job().state())));
    }
    JobView& next = j;
    const absl::Time now = options_.now();
    WriteBatch b;
    // The first report of a task and its backup wins; the other lease ends here.
    if (v1::TaskRecord* sibling = SiblingLocked(t); sibling != nullptr) {
      sibling->set_state(v1::TASK_CANCELLED);
      sibling->set_superseded_by(t.task_id());
      PutTask(b, *sibling);
    }
    for (size_t i = 0; i < operands.size(); ++i) {
      b.Merge(Family::kStats, StatsKey(job_id, static_cast<int64_t>(i)), operands[i]);
    }
    for (int64_t s = t.shard_begin(); s < t.shard_end(); ++s) {
      next.shards[s].set_state(v1::SHARD_DONE);
      next.shards[s].set_task_id(t.task_id());
      if (eval) {
        next.shards[s].set_result(eval_result.shards(static_cast<int>(s - t.shard_begin())).SerializeAsString());
      }
      PutShard(b, job_id, s, next.shards[s]);
    }
    t.set_state(v1::TASK_DONE);
    t.set_samples_done(header.samples());
    PutTask(b, t);
    it->second.set_state(v1::TASK_DONE);  // for Touch; restored if the write fails
    v1::JobProgress* p = next.record.mutable_job()->mutable_progress();
    p->set_shards_done(p->shards_done() + (t.shard_end() - t.shard_begin()));
    p->set_samples_done(p->samples_done() + header.samples());
    p->set_tokens_done(p->tokens_done() + header.tokens());
    if (!t.backup_of().empty()) p->set_backup_wins(p->backup_wins() + 1);
    v1::WorkerShare* share = ShareLocked(next, t.worker_id(), now);
    share->set_tasks_done(share->tasks_done() + 1);
    share->set_samples_done(share->samples_done() + header.samples());
    *share->mutable_last_report_time() = ToProto(now);
    if (header.compute_seconds() > 0) {
      const double sps = header.samples() / header.compute_seconds();
      next.record.set_samples_per_second(MovingAverage(next.record.samples_per_second(), sps));
      share->set_samples_per_second(MovingAverage(share->samples_per_second(), sps));
    }
    if (p->shards_done() == p->shards_total()) {
      if (eval) {
        absl::Status fin = FinishEvaluationLocked(next);
        if (!fin.ok()) FailJob(next, std::string(fin.message()));
      }
      if (is_export) {
        if (export_result.output_dir() != next.record.export_payload().output_dir()) {
          FailJob(next, absl::StrCat("export report names ", export_result.output_dir(),
                                     ", not the requested ", next.record.export_payload().output_dir()));
        } else {
          *next.record.mutable_export_response() = export_result;
        }
      }
      if (next.record.job().state() != v1::JOB_FAILED) {
        next.record.mutable_job()->set_state(v1::JOB_CALIBRATED);
      }
    }
    Touch(next);
    PutJob(b, next);
    QCAL_RETURN_IF_ERROR(WriteOrReload(b, job_id));
    // The loser of a backup race stays (TASK_CANCELLED) until its lease runs out,
    // so that its heartbeats say cancelled and its report is refused by name.
    tasks_.erase(it);
    WorkerTaskEndedLocked(t.worker_id(), now, static_cast<double>(header.samples()),
                          header.compute_seconds());
    resp.set_job_state(j.record.job().state());
    changed.insert(job_id);
    if (metrics_) {
      if (!t.backup_of().empty()) metrics_->BackupWon();
      metrics_->Report(bytes);
      metrics_->TokensProcessed(header.tokens());
      metrics_->MergeLatency(absl::ToDoubleSeconds(absl::Now() - start));
    }
    UpdateGauges();
  }
  Notify(changed);
  return resp;
}

void Coordinator::ReleaseTask(WriteBatch& b, v1::TaskRecord& task, v1::TaskState end_state,
                              const std::string& reason, bool retryable,
                              std::set<std::string>* changed) {
  JobView& j = jobs_.at(task.job_id());
  task.set_state(end_state);
  PutTask(b, task);
  if (auto it = tasks_.find(task.task_id()); it != tasks_.end()) {
    it->second.set_state(end_state);  // for Touch; restored if the write fails
  }
  WorkerTaskEndedLocked(task.worker_id(), options_.now(), 0, 0);
  if (IsFinal(j.record.job().state())) return;
  // With a live backup (or original) of the same shards, they stay with it.
  const v1::TaskRecord* sibling = SiblingLocked(task);
  std::string fatal;
  for (int64_t s = task.shard_begin(); s < task.shard_end(); ++s) {
    v1::ShardRecord& shard = j.shards[s];
    if (shard.state() != v1::SHARD_LEASED || shard.task_id() != task.task_id()) continue;
    shard.set_failed_attempts(shard.failed_attempts() + 1);
    shard.add_failure_reasons(reason);
    while (shard.failure_reasons_size() > 8) shard.mutable_failure_reasons()->erase(shard.mutable_failure_reasons()->begin());
    if (sibling != nullptr) {
      shard.set_task_id(sibling->task_id());
    } else {
      shard.set_state(v1::SHARD_PENDING);
      shard.clear_task_id();
      j.pending.insert(s);
    }
    PutShard(b, task.job_id(), s, shard);
    if (!retryable || shard.failed_attempts() >= options_.max_shard_attempts) {
      if (fatal.empty()) {
        fatal = retryable ? absl::StrCat("shard ", s, " failed ", shard.failed_attempts(),
                                         " times; last: ", reason)
                          : absl::StrCat("shard ", s, " failed: ", reason);
        for (const auto& why : shard.failure_reasons()) {
          j.record.mutable_job()->add_failure_reasons(absl::StrCat("shard ", s, ": ", why));
        }
      }
    }
  }
  if (end_state == v1::TASK_EXPIRED) {
    auto* p = j.record.mutable_job()->mutable_progress();
    p->set_lease_expiries(p->lease_expiries() + 1);
  }
  if (!fatal.empty()) FailJob(j, fatal);
  Touch(j);
  PutJob(b, j);
  changed->insert(task.job_id());
}

absl::Status Coordinator::FailTask(const v1::FailTaskRequest& r) {
  std::set<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(r.task_id());
    if (it == tasks_.end()) {
      QCAL_ASSIGN_OR_RETURN(auto stored, store_->Get(Family::kTasks, r.task_id()));
      if (!stored) return absl::NotFoundError(absl::StrCat("no task \"", r.task_id(), "\""));
      return absl::FailedPreconditionError(absl::StrCat("task ", r.task_id(), " is no longer leased"));
    }
    if (it->second.lease_id() != r.lease_id() || it->second.worker_id() != r.worker_id()) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease ", r.lease_id(), " of task ", r.task_id(), " is not current"));
    }
    v1::TaskRecord task = it->second;
    WriteBatch b;
    const std::string reason = r.reason().substr(0, 2000);
    ReleaseTask(b, task, v1::TASK_FAILED, reason.empty() ? "worker gave no reason" : reason,
                r.retryable(), &changed);
    QCAL_RETURN_IF_ERROR(WriteOrReload(b, task.job_id()));
    tasks_.erase(it);
    UpdateGauges();
  }
  Notify(changed);
  return absl::OkStatus();
}

absl::Status Coordinator::ExpireLeases() {
  std::set<std::string> changed;
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = ToMs(options_.now());
    std::vector<std::string> expired;
    for (const auto& [id, t] : tasks_) {
      if (t.deadline_ms() < now) expired.push_back(id);
    }
    for (const auto& id : expired) {
      v1::TaskRecord task = tasks_.at(id);
      WriteBatch b;
      const bool cancelled = task.state() == v1::TASK_CANCELLED;
      if (cancelled) {
        task.set_state(v1::TASK_CANCELLED);
        PutTask(b, task);
      } else {
        ReleaseTask(b, task, v1::TASK_EXPIRED,
                    absl::StrCat("lease of worker ", task.worker_id(), " expired"), true, &changed);
      }
      absl::Status st = WriteOrReload(b, task.job_id());
      if (!st.ok()) {
        result = st;
        break;
      }
      tasks_.erase(id);
      if (!cancelled && metrics_) metrics_->LeaseExpired();
    }
    // Forget workers not seen for a long time.
    const absl::Time cutoff = options_.now() - 10 * options_.lease_duration;
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->second.last_seen >= cutoff) {
        ++it;
        continue;
      }
      if (metrics_) metrics_->RemoveWorker(it->first, it->second.name);
      it = workers_.erase(it);
    }
    UpdateGauges();
  }
  Notify(changed);
  return result;
}

void Coordinator::UpdateGauges() {
  if (metrics_ == nullptr) return;
  std::map<std::string, int64_t> jobs, shards;
  for (int s = v1::JOB_PENDING; s <= v1::JOB_CANCELLED; ++s) jobs[v1::JobState_Name(s)] = 0;
  shards["pending"] = shards["leased"] = shards["done"] = 0;
  for (const auto& [id, j] : jobs_) {
    ++jobs[v1::JobState_Name(j.record.job().state())];
    const auto& p = j.record.job().progress();
    if (IsFinal(j.record.job().state())) continue;
    shards["pending"] += static_cast<int64_t>(j.pending.size());
    shards["leased"] += p.shards_leased();
    shards["done"] += p.shards_done();
  }
  shards["tasks_leased"] = static_cast<int64_t>(tasks_.size());
  metrics_->SetJobsByState(jobs);
  metrics_->SetTasksByState(shards);
  metrics_->SetWorkers(LiveWorkersLocked(options_.now()));
}

}  // namespace qcal::server
