// Coordinator: leasing work to workers (LeaseTask), with the sizing and backup
// policy of scheduling.h, and the workers' speed and idle-time accounting.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/coordinator.h"
#include "server/core/records.h"
#include "server/core/scheduling.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int32_t kRetryAfterMs = 500;

}  // namespace

absl::StatusOr<v1::LeaseTaskResponse> Coordinator::LeaseTask(const v1::LeaseTaskRequest& r) {
  std::set<std::string> changed;
  v1::LeaseTaskResponse resp;
  {
    absl::MutexLock lock(&mu_);
    auto w = workers_.find(r.worker_id());
    if (w == workers_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown worker \"", r.worker_id(),
                                              "\" (the coordinator restarted?); register again"));
    }
    const absl::Time now = options_.now();
    w->second.last_seen = now;
    if (!CheckRoomFor("leases").ok()) {
      // Short of disk: no new task (its report could not be stored); try again later.
      resp.set_retry_after_ms(kRetryAfterMs);
      return resp;
    }
    if (JobView* j = ChooseJobLocked(r.loaded_model()); j != nullptr) {
      QCAL_RETURN_IF_ERROR(LeaseShardsLocked(*j, r.worker_id(), now, resp.mutable_task()));
    } else {
      QCAL_ASSIGN_OR_RETURN(bool leased, LeaseBackupLocked(r.worker_id(), now, resp.mutable_task()));
      if (!leased) {
        // mutable_task() made the field present: a worker must see no task at all.
        resp.clear_task();
        resp.set_retry_after_ms(kRetryAfterMs);
        return resp;
      }
    }
    changed.insert(resp.task().job_id());
    UpdateGauges();
  }
  Notify(changed);
  return resp;
}

Coordinator::JobView* Coordinator::ChooseJobLocked(const std::string& loaded_model) {
  JobView* chosen = nullptr;
  for (auto& [id, j] : jobs_) {
    if (IsFinal(j.record.job().state()) || j.pending.empty()) continue;
    if (chosen == nullptr) chosen = &j;
    if (!loaded_model.empty() && j.record.job().resolved_model() == loaded_model) return &j;
  }
  return chosen;
}

absl::Status Coordinator::LeaseShardsLocked(JobView& j, const std::string& worker_id,
                                            absl::Time now, v1::Task* out) {
  const v1::Job& job = j.record.job();
  const int64_t want = TaskShards(static_cast<int64_t>(j.pending.size()), LiveWorkersLocked(now),
                                  j.record.shard_size(), j.record.samples_per_second(),
                                  job.spec().report_interval_seconds());
  const int64_t begin = *j.pending.begin();
  int64_t end = begin;
  const WorkKind& kind = KindOf(j.record);
  while (end - begin < want && j.pending.count(end) && kind.SameTask(j.record, begin, end)) ++end;

  v1::TaskRecord t = NewTaskLocked(j, worker_id, begin, end, now);
  WriteBatch b;
  for (int64_t s = begin; s < end; ++s) {
    j.pending.erase(s);
    j.shards[s].set_state(v1::SHARD_LEASED);
    j.shards[s].set_task_id(t.task_id());
    PutShard(b, job.id(), s, j.shards[s]);
  }
  if (job.state() == v1::JOB_PENDING) j.record.mutable_job()->set_state(v1::JOB_RUNNING);
  return StartLeaseLocked(b, j, t, now, out);
}

absl::StatusOr<bool> Coordinator::LeaseBackupLocked(const std::string& worker_id,
                                                    absl::Time now, v1::Task* out) {
  const v1::TaskRecord* straggler = nullptr;
  double most = 0;
  for (const auto& [id, t] : tasks_) {
    if (t.state() != v1::TASK_LEASED || t.worker_id() == worker_id) continue;
    const JobView& j = jobs_.at(t.job_id());
    if (IsFinal(j.record.job().state()) || !KindOf(j.record).allows_backups()) continue;
    if (SiblingLocked(t) != nullptr) continue;  // backed up already
    RunningTask running;
    running.samples = KindOf(j.record).SamplesOfShards(j.record, t.shard_begin(), t.shard_end());
    running.samples_done = t.samples_done();
    running.elapsed_seconds = absl::ToDoubleSeconds(now - absl::FromUnixMillis(t.leased_at_ms()));
    running.samples_per_second = SpeedOnJob(j, t.worker_id());
    const double urgency = BackupUrgency(running, SpeedOnJob(j, worker_id));
    if (urgency > most) {
      most = urgency;
      straggler = &t;
    }
  }
  if (straggler == nullptr) return false;
  const v1::TaskRecord original = *straggler;
  JobView& j = jobs_.at(original.job_id());
  v1::TaskRecord t = NewTaskLocked(j, worker_id, original.shard_begin(), original.shard_end(), now);
  t.set_backup_of(original.task_id());
  auto* p = j.record.mutable_job()->mutable_progress();
  p->set_backup_tasks(p->backup_tasks() + 1);
  WriteBatch b;
  QCAL_RETURN_IF_ERROR(StartLeaseLocked(b, j, t, now, out));
  if (metrics_) metrics_->BackupStarted();
  return true;
}

v1::TaskRecord Coordinator::NewTaskLocked(JobView& j, const std::string& worker_id,
                                          int64_t begin, int64_t end, absl::Time now) {
  v1::TaskRecord t;
  t.set_task_id(absl::StrCat(j.record.job().id(), ".t", j.record.next_task_seq()));
  j.record.set_next_task_seq(j.record.next_task_seq() + 1);
  t.set_job_id(j.record.job().id());
  t.set_shard_begin(begin);
  t.set_shard_end(end);
  t.set_lease_id(NewId("lease-"));
  t.set_worker_id(worker_id);
  t.set_state(v1::TASK_LEASED);
  t.set_leased_at_ms(ToMs(now));
  t.set_deadline_ms(ToMs(now + options_.lease_duration));
  return t;
}

absl::Status Coordinator::StartLeaseLocked(WriteBatch& b, JobView& j, const v1::TaskRecord& t,
                                           absl::Time now, v1::Task* out) {
  // Registered before Touch, which counts the job's active workers from tasks_; a
  // failed write drops it again (WriteOrReload reloads the job's tasks).
  tasks_[t.task_id()] = t;
  ShareLocked(j, t.worker_id(), now);
  Touch(j);
  PutJob(b, j);
  PutTask(b, t);
  QCAL_RETURN_IF_ERROR(WriteOrReload(b, t.job_id()));
  WorkerLeasedLocked(t.worker_id(), now);
  FillTask(j, t, out);
  return absl::OkStatus();
}

void Coordinator::FillTask(const JobView& j, const v1::TaskRecord& t, v1::Task* task) const {
  const v1::Job& job = j.record.job();
  const int64_t begin = t.shard_begin(), end = t.shard_end();
  task->set_task_id(t.task_id());
  task->set_job_id(job.id());
  task->set_lease_id(t.lease_id());
  *task->mutable_lease_deadline() = TimeUtil::MillisecondsToTimestamp(t.deadline_ms());
  task->set_model(job.resolved_model());
  task->set_corpus(job.resolved_corpus());
  task->set_shard_begin(begin);
  task->set_shard_end(end);
  const int64_t size = j.record.shard_size();
  task->set_shard_size(static_cast<int32_t>(size));
  task->set_batch_size(job.spec().batch_size());
  KindOf(j.record).FillTask(j.record, begin, end, task);
}

v1::TaskRecord* Coordinator::SiblingLocked(const v1::TaskRecord& t) {
  for (auto& [id, other] : tasks_) {
    if (id == t.task_id() || other.state() != v1::TASK_LEASED) continue;
    if (other.backup_of() == t.task_id() || id == t.backup_of()) return &other;
  }
  return nullptr;
}

v1::WorkerShare* Coordinator::ShareLocked(JobView& j, const std::string& worker_id,
                                          absl::Time now) {
  auto* p = j.record.mutable_job()->mutable_progress();
  for (auto& share : *p->mutable_workers()) {
    if (share.worker_id() == worker_id) return &share;
  }
  v1::WorkerShare* share = p->add_workers();
  share->set_worker_id(worker_id);
  if (auto w = workers_.find(worker_id); w != workers_.end()) share->set_name(w->second.name);
  *share->mutable_first_lease_time() = ToProto(now);
  return share;
}

double Coordinator::SpeedOnJob(const JobView& j, const std::string& worker_id) const {
  for (const auto& share : j.record.job().progress().workers()) {
    if (share.worker_id() == worker_id && share.samples_per_second() > 0) {
      return share.samples_per_second();
    }
  }
  return j.record.samples_per_second();
}

int64_t Coordinator::LiveWorkersLocked(absl::Time now) const {
  const absl::Time cutoff = now - options_.lease_duration;
  int64_t live = 0;
  for (const auto& [id, w] : workers_) live += w.last_seen >= cutoff;
  return live;
}

void Coordinator::WorkerLeasedLocked(const std::string& worker_id, absl::Time now) {
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return;
  if (w->second.idle_since < now && metrics_) {
    metrics_->AddWorkerIdle(worker_id, w->second.name, absl::ToDoubleSeconds(now - w->second.idle_since));
  }
  w->second.idle_since = absl::InfiniteFuture();
}

void Coordinator::WorkerTaskEndedLocked(const std::string& worker_id, absl::Time now,
                                        double samples, double compute_seconds) {
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return;  // a report from before a coordinator restart
  w->second.idle_since = now;
  if (samples > 0 && compute_seconds > 0) {
    w->second.samples_per_second = MovingAverage(w->second.samples_per_second, samples / compute_seconds);
    if (metrics_) metrics_->SetWorkerSpeed(worker_id, w->second.name, w->second.samples_per_second);
  }
}

}  // namespace qcal::server
