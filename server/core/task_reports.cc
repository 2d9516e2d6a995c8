// Coordinator: the worker API besides leasing (leasing.cc) and results
// (task_results.cc): registration, heartbeats, failures and lease expiry.
#include "server/core/coordinator.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

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
  // Short of disk, the extension lives in memory only (a restart meanwhile would
  // see the last stored deadline): the lease must outlast the shortage, for the
  // worker is holding its report until reports are taken again.
  if (CheckRoomFor("lease extensions").ok()) {
    WriteBatch b;
    PutTask(b, next);
    absl::Status written = store_->Write(b);
    if (!written.ok() && !absl::IsResourceExhausted(written)) return written;
  }
  t = next;
  *resp.mutable_lease_deadline() = TimeUtil::MillisecondsToTimestamp(t.deadline_ms());
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
    if (!KindOf(j.record).is_operation()) ++jobs[v1::JobState_Name(j.record.job().state())];
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
