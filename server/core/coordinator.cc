// Coordinator: creation, rebuilding the state from the store, and the job table's
// persistence (one WriteBatch per decision; see coordinator.h).
#include <algorithm>
#include "server/core/coordinator.h"

#include <cinttypes>
#include <cstdio>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/records.h"

namespace qcal::server {
Coordinator::Coordinator(Store* store, CoordinatorOptions options, Metrics* metrics,
                         PathPolicy paths, std::optional<PathPolicy> output_paths)
    : store_(store),
      options_(std::move(options)),
      metrics_(metrics),
      paths_(std::move(paths)),
      output_paths_(std::move(output_paths)) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(Store* store,
                                                                 CoordinatorOptions options,
                                                                 Metrics* metrics) {
  QCAL_ASSIGN_OR_RETURN(PathPolicy paths, PathPolicy::Create(options.data_roots));
  if (options.lease_duration <= absl::ZeroDuration() || options.max_shard_attempts < 1) {
    return absl::InvalidArgumentError("lease duration and max shard attempts must be positive");
  }
  std::optional<PathPolicy> output_paths;
  if (!options.output_root.empty()) {
    QCAL_ASSIGN_OR_RETURN(PathPolicy p, PathPolicy::Create({options.output_root}));
    output_paths = std::move(p);
  }
  std::unique_ptr<Coordinator> c(
      new Coordinator(store, std::move(options), metrics, std::move(paths), std::move(output_paths)));
  {
    absl::MutexLock lock(&c->mu_);
    QCAL_RETURN_IF_ERROR(c->Load());
    std::random_device rd;
    c->id_salt_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    c->UpdateGauges();
  }
  return c;
}

absl::Status Coordinator::Load() {
  QCAL_ASSIGN_OR_RETURN(auto next, store_->Get(Family::kMeta, kMetaNextJob));
  if (next && !absl::SimpleAtoi(*next, &next_job_seq_)) return Corrupt(kMetaNextJob);
  absl::Status st;
  QCAL_RETURN_IF_ERROR(store_->Scan(Family::kJobs, "", [&](const std::string& key, const std::string& value) {
    v1::JobRecord r;
    if (!r.ParseFromString(value)) {
      st = Corrupt("jobs/" + key);
      return false;
    }
    st = CheckKnownKind(key, r);
    if (!st.ok()) return false;
    if (!r.request_id().empty()) request_ids_[r.request_id()] = key;
    jobs_.emplace(key, JobView());
    return true;
  }));
  QCAL_RETURN_IF_ERROR(st);
  for (auto& [id, j] : jobs_) QCAL_RETURN_IF_ERROR(LoadJob(id, &j));
  QCAL_RETURN_IF_ERROR(MigrateLocked());
  QCAL_RETURN_IF_ERROR(store_->Scan(Family::kTasks, "", [&](const std::string& key, const std::string& value) {
    v1::TaskRecord t;
    if (!t.ParseFromString(value)) {
      st = Corrupt("tasks/" + key);
      return false;
    }
    if (t.state() == v1::TASK_LEASED) tasks_[key] = t;
    return true;
  }));
  return st;
}

absl::Status Coordinator::LoadJob(const std::string& id, JobView* j) {
  QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kJobs, id));
  if (!value) return absl::NotFoundError(absl::StrCat("job ", id, " vanished from the store"));
  if (!j->record.ParseFromString(*value)) return Corrupt("jobs/" + id);
  j->linear_index.clear();
  for (int i = 0; i < j->record.linear_names_size(); ++i) j->linear_index[j->record.linear_names(i)] = i;
  j->shards.assign(j->record.job().progress().shards_total(), v1::ShardRecord());
  j->pending.clear();
  absl::Status st;
  QCAL_RETURN_IF_ERROR(store_->Scan(Family::kShards, id + "/", [&](const std::string& key, const std::string& value) {
    int64_t index = 0;
    v1::ShardRecord s;
    if (!absl::SimpleAtoi(key.substr(id.size() + 1), &index) || index < 0 ||
        index >= static_cast<int64_t>(j->shards.size()) || !s.ParseFromString(value)) {
      st = Corrupt("shards/" + key);
      return false;
    }
    j->shards[index] = s;
    if (s.state() == v1::SHARD_PENDING) j->pending.insert(index);
    return true;
  }));
  return st;
}

absl::Status Coordinator::MigrateLocked() {
  QCAL_ASSIGN_OR_RETURN(auto stored, store_->Get(Family::kMeta, kSchemaVersionKey));
  int version = kSchemaVersion;
  if (stored && !absl::SimpleAtoi(*stored, &version)) return Corrupt(kSchemaVersionKey);
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version < kOldestSchemaVersion || version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the store's schema version ", version, " is not one this qcal reads (",
        kOldestSchemaVersion, " to ", kSchemaVersion, ")"));
  }
  // 1 -> 2: an operation's finished work was JOB_CALIBRATED; it is JOB_SUCCEEDED.
  WriteBatch b;
  for (auto& [id, j] : jobs_) {
    if (!KindOf(j.record).is_operation() || j.record.job().state() != v1::JOB_CALIBRATED) continue;
    j.record.mutable_job()->set_state(v1::JOB_SUCCEEDED);
    b.Put(Family::kJobs, id, j.record.SerializeAsString());
  }
  b.Put(Family::kMeta, kSchemaVersionKey, absl::StrCat(kSchemaVersion));
  return store_->Write(b);
}

absl::Status Coordinator::InsertNewJob(JobView j, int64_t shards) {
  const std::string id = j.record.job().id();
  Touch(j);
  WriteBatch b;
  j.shards.resize(shards);
  for (int64_t s = 0; s < shards; ++s) {
    j.shards[s].set_state(v1::SHARD_PENDING);
    j.pending.insert(s);
    PutShard(b, id, s, j.shards[s]);
  }
  PutJob(b, j);
  b.Put(Family::kMeta, kMetaNextJob, absl::StrCat(next_job_seq_ + 1));
  QCAL_RETURN_IF_ERROR(store_->Write(b));
  ++next_job_seq_;
  jobs_.emplace(id, std::move(j));
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status Coordinator::WriteOrReload(const WriteBatch& b, const std::string& job_id) {
  absl::Status st = store_->Write(b);
  if (st.ok()) return st;
  // The in-memory view of the job and its tasks was changed ahead of the write:
  // restore both from the store, which the failed batch did not touch. The tasks
  // are read back whole (a report may have dropped its task from memory already;
  // left out, its shards would stay leased forever).
  JobView fresh;
  if (LoadJob(job_id, &fresh).ok()) jobs_[job_id] = std::move(fresh);
  std::map<std::string, v1::TaskRecord> leased;
  const absl::Status scanned =
      store_->Scan(Family::kTasks, job_id + ".", [&](const std::string& id, const std::string& value) {
        v1::TaskRecord t;
        if (t.ParseFromString(value) && t.job_id() == job_id &&
            (t.state() == v1::TASK_LEASED || t.state() == v1::TASK_CANCELLED)) {
          leased[id] = std::move(t);
        }
        return true;
      });
  if (!scanned.ok()) return st;  // unreadable now (the store is reopening): keep memory
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    it = it->second.job_id() == job_id ? tasks_.erase(it) : std::next(it);
  }
  tasks_.merge(leased);
  return st;
}

std::string Coordinator::NewId(const std::string& prefix) {
  id_salt_ = id_salt_ * 6364136223846793005ull + 1442695040888963407ull;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%016" PRIx64, prefix.c_str(), id_salt_);
  return buf;
}

void Coordinator::PutJob(WriteBatch& b, const JobView& j) {
  b.Put(Family::kJobs, j.record.job().id(), j.record.SerializeAsString());
  if (KindOf(j.record).is_operation()) SyncOperation(b, j);
}

void Coordinator::PutShard(WriteBatch& b, const std::string& job_id, int64_t shard,
                           const v1::ShardRecord& s) {
  b.Put(Family::kShards, ShardKey(job_id, shard), s.SerializeAsString());
}

void Coordinator::PutTask(WriteBatch& b, const v1::TaskRecord& t) {
  b.Put(Family::kTasks, t.task_id(), t.SerializeAsString());
}

void Coordinator::Touch(JobView& j) {
  v1::Job* job = j.record.mutable_job();
  job->set_version(job->version() + 1);
  *job->mutable_update_time() = ToProto(options_.now());
  int64_t leased = 0;
  for (const auto& s : j.shards) leased += s.state() == v1::SHARD_LEASED;
  job->mutable_progress()->set_shards_leased(leased);
  std::set<std::string> active;
  if (!IsFinal(job->state())) {
    for (const auto& [id, t] : tasks_) {
      if (t.job_id() == job->id() && t.state() == v1::TASK_LEASED) active.insert(t.worker_id());
    }
  }
  job->mutable_progress()->set_workers_active(static_cast<int32_t>(active.size()));
  for (auto& share : *job->mutable_progress()->mutable_workers()) {
    share.set_active(active.count(share.worker_id()) > 0);
  }
}

void Coordinator::FailJob(JobView& j, const std::string& error) {
  v1::Job* job = j.record.mutable_job();
  job->set_state(v1::JOB_FAILED);
  job->set_error(error);
}

}  // namespace qcal::server
