// Coordinator: the client API for calibration jobs (submit, get, list, cancel,
// statistics).
#include <cinttypes>
#include "server/core/coordinator.h"

#include <cstdio>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/core/records.h"

namespace qcal::server {

std::optional<absl::StatusOr<v1::Job>> Coordinator::RetriedSubmitLocked(
    const std::string& request_id, const v1::JobSpec& spec) const {
  if (request_id.empty()) return std::nullopt;
  auto it = request_ids_.find(request_id);
  if (it == request_ids_.end()) return std::nullopt;
  const v1::Job& job = jobs_.at(it->second).record.job();
  if (!google::protobuf::util::MessageDifferencer::Equals(spec, job.spec())) {
    return absl::AlreadyExistsError(absl::StrCat("request_id \"", request_id,
                                                 "\" was used for job ", it->second,
                                                 " with a different spec"));
  }
  return job;
}

absl::StatusOr<v1::Job> Coordinator::SubmitJob(const v1::SubmitJobRequest& request) {
  if (request.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  }
  QCAL_RETURN_IF_ERROR(CheckRoomFor("new jobs"));
  {
    // A retry that repeats the stored spec exactly is answered without reading files.
    absl::MutexLock lock(&mu_);
    if (auto retried = RetriedSubmitLocked(request.request_id(), request.spec());
        retried.has_value() && retried->ok()) {
      return *std::move(retried);
    }
  }
  // Validation reads files: do it outside the lock.
  v1::JobSpec spec = request.spec();
  v1::Job job;
  std::vector<std::string> names;
  std::vector<int64_t> in, out;
  QCAL_RETURN_IF_ERROR(ValidateSpec(spec, job, &names, &in, &out));

  absl::MutexLock lock(&mu_);
  // Checked again with the insert, under one lock: concurrent submits of one key
  // validate in parallel, and only the first inserts (the spec compared is the
  // validated one, defaults filled in, as stored).
  if (auto retried = RetriedSubmitLocked(request.request_id(), spec)) return *std::move(retried);
  int64_t active = 0;
  for (const auto& [_, j] : jobs_) active += !IsFinal(j.record.job().state());
  if (active >= options_.max_active_jobs) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many active jobs (", active, "); wait for some to finish"));
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "job-%06" PRId64 "-", next_job_seq_);
  const std::string id = buf + NewId("").substr(12);
  JobView j;
  v1::JobRecord& r = j.record;
  *job.mutable_spec() = spec;
  job.set_id(id);
  job.set_state(v1::JOB_PENDING);
  const int64_t samples = spec.sampling().num_samples();
  const int64_t shards = (samples + spec.shard_size() - 1) / spec.shard_size();
  job.mutable_progress()->set_shards_total(shards);
  job.mutable_progress()->set_samples_total(samples);
  *job.mutable_create_time() = ToProto(options_.now());
  *r.mutable_job() = job;
  r.set_next_task_seq(1);
  r.set_request_id(request.request_id());
  r.set_shard_size(spec.shard_size());
  for (size_t i = 0; i < names.size(); ++i) {
    r.add_linear_names(names[i]);
    r.add_linear_in(in[i]);
    r.add_linear_out(out[i]);
    j.linear_index[names[i]] = static_cast<int>(i);
  }
  QCAL_RETURN_IF_ERROR(InsertNewJob(std::move(j), shards));
  if (!request.request_id().empty()) request_ids_[request.request_id()] = id;
  return jobs_.at(id).record.job();
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  return it->second.record.job();
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(const v1::ListJobsRequest& request) {
  int page = request.page_size() == 0 ? 50 : request.page_size();
  if (page < 0 || page > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", page, " is out of range [1, 1000]"));
  }
  absl::MutexLock lock(&mu_);
  if (!request.page_token().empty() && !absl::StartsWith(request.page_token(), "job-")) {
    return absl::InvalidArgumentError("page_token is not one this server returned");
  }
  v1::ListJobsResponse resp;
  // Ids sort by creation; newest first.
  auto it = request.page_token().empty() ? jobs_.lower_bound("job.") : jobs_.lower_bound(request.page_token());
  while (it != jobs_.begin()) {
    --it;
    const v1::Job& job = it->second.record.job();
    if (KindOf(it->second.record).is_operation()) continue;
    if (request.state() != v1::JOB_STATE_UNSPECIFIED && job.state() != request.state()) continue;
    if (resp.jobs_size() == page) {
      resp.set_next_page_token(resp.jobs(page - 1).id());
      break;
    }
    *resp.add_jobs() = job;
  }
  return resp;
}

absl::StatusOr<v1::Job> Coordinator::CancelJob(const std::string& job_id) {
  v1::Job result;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
    JobView& j = it->second;
    if (IsFinal(j.record.job().state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job_id, " is already ", v1::JobState_Name(j.record.job().state())));
    }
    JobView& next = j;
    next.record.mutable_job()->set_state(v1::JOB_CANCELLED);
    Touch(next);
    WriteBatch b;
    PutJob(b, next);
    // Leased tasks keep their records (heartbeats then say "cancelled") until expiry.
    std::vector<v1::TaskRecord> cancelled;
    for (auto& [id, t] : tasks_) {
      if (t.job_id() != job_id) continue;
      v1::TaskRecord c = t;
      c.set_state(v1::TASK_CANCELLED);
      PutTask(b, c);
      cancelled.push_back(c);
    }
    QCAL_RETURN_IF_ERROR(WriteOrReload(b, job_id));
    for (const auto& c : cancelled) tasks_[c.task_id()] = c;
    result = j.record.job();
    UpdateGauges();
  }
  Notify({job_id});
  return result;
}

absl::StatusOr<StatsReader> Coordinator::OpenStats(const std::string& job_id, bool allow_partial,
                                                   int64_t max_chunk_bytes) {
  v1::JobStatsChunk head;
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
    if (KindOf(it->second.record).is_operation()) {
      return absl::FailedPreconditionError(
          absl::StrCat(job_id, " is the work of an operation, not a calibration job"));
    }
    const v1::Job& job = it->second.record.job();
    if (job.state() != v1::JOB_CALIBRATED && !allow_partial) {
      return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ",
                                                        v1::JobState_Name(job.state()),
                                                        ", not calibrated (ask for partial statistics)"));
    }
    head.set_job_id(job_id);
    head.set_state(job.state());
    head.set_tokens(job.progress().tokens_done());
    head.set_samples(job.progress().samples_done());
    names.assign(it->second.record.linear_names().begin(), it->second.record.linear_names().end());
  }
  return StatsReader(store_, std::move(head), std::move(names), max_chunk_bytes);
}

absl::Status Coordinator::StreamStats(const std::string& job_id, bool allow_partial,
                                      int64_t max_chunk_bytes,
                                      const std::function<bool(const v1::JobStatsChunk&)>& fn) {
  QCAL_ASSIGN_OR_RETURN(StatsReader reader, OpenStats(job_id, allow_partial, max_chunk_bytes));
  while (true) {
    QCAL_ASSIGN_OR_RETURN(std::optional<v1::JobStatsChunk> chunk, reader.Next());
    if (!chunk || !fn(*chunk)) return absl::OkStatus();
  }
}

}  // namespace qcal::server
