#include "server/core/coordinator.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_index.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "common/stats/stats_proto.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/evaluation_plan.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kMaxSamples = 10'000'000;
constexpr char kMetaNextJob[] = "next_job_seq";

std::string ShardKey(const std::string& job, int64_t shard) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/%012" PRId64, shard);
  return job + buf;
}

std::string StatsKey(const std::string& job, int64_t linear) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/%06" PRId64, linear);
  return job + buf;
}

absl::Status Corrupt(const std::string& what) {
  return absl::DataLossError(absl::StrCat("stored record ", what, " is corrupt"));
}

// The refusal of a report whose task lost the race with its backup (or original).
absl::Status Superseded(const v1::TaskRecord& t) {
  return absl::FailedPreconditionError(absl::StrCat(
      "task ", t.task_id(), " was superseded: task ", t.superseded_by(),
      " ran the same shards and reported first; this report was refused"));
}

}  // namespace

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
    if (!r.request_id().empty()) request_ids_[r.request_id()] = key;
    jobs_.emplace(key, JobView());
    return true;
  }));
  QCAL_RETURN_IF_ERROR(st);
  for (auto& [id, j] : jobs_) QCAL_RETURN_IF_ERROR(LoadJob(id, &j));
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
  // The in-memory view of the job was changed ahead of the write: restore it from
  // the store, which the failed batch did not touch.
  JobView fresh;
  if (LoadJob(job_id, &fresh).ok()) jobs_[job_id] = std::move(fresh);
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (it->second.job_id() != job_id) {
      ++it;
      continue;
    }
    auto stored = store_->Get(Family::kTasks, it->first);
    v1::TaskRecord t;
    if (stored.ok() && *stored && t.ParseFromString(**stored) &&
        (t.state() == v1::TASK_LEASED || t.state() == v1::TASK_CANCELLED)) {
      it->second = t;
      ++it;
    } else {
      it = tasks_.erase(it);
    }
  }
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
  if (j.record.kind() != v1::JOB_KIND_CALIBRATE) SyncOperation(b, j);
}

void Coordinator::SyncOperation(WriteBatch& b, const JobView& j) {
  const v1::Job& job = j.record.job();
  v1::OperationRecord r;
  v1::Operation* op = r.mutable_operation();
  op->set_name("operations/" + job.id());
  r.set_job_id(j.record.parent_job());
  r.set_create_ms(TimeUtil::TimestampToMilliseconds(job.create_time()));
  const bool is_export = j.record.kind() == v1::JOB_KIND_EXPORT;
  if (is_export) {
    v1::ExportMetadata meta;
    meta.set_job_id(j.record.parent_job());
    meta.set_output_dir(j.record.export_payload().output_dir());
    meta.set_format(j.record.export_payload().request().format());
    meta.set_threshold(j.record.export_payload().threshold());
    op->mutable_metadata()->PackFrom(meta);
  } else {
    v1::EvaluateMetadata meta;
    meta.set_job_id(j.record.parent_job());
    meta.set_units_total(job.progress().shards_total());
    meta.set_units_done(job.progress().shards_done());
    op->mutable_metadata()->PackFrom(meta);
  }
  switch (job.state()) {
    case v1::JOB_CALIBRATED:
      op->set_done(true);
      if (is_export) {
        op->mutable_response()->PackFrom(j.record.export_response());
      } else {
        op->mutable_response()->PackFrom(j.record.evaluate_response());
      }
      break;
    case v1::JOB_FAILED:
      op->set_done(true);
      op->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kAborted));
      op->mutable_error()->set_message(job.error());
      break;
    case v1::JOB_CANCELLED:
      op->set_done(true);
      op->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
      op->mutable_error()->set_message(is_export ? "export cancelled" : "evaluation cancelled");
      break;
    default:
      break;
  }
  b.Put(Family::kOperations, job.id(), r.SerializeAsString());
  operations_changed_.SignalAll();
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

int64_t Coordinator::SamplesOfShards(const JobView& j, int64_t begin, int64_t end) const {
  const int64_t size = j.record.shard_size();
  if (j.record.kind() == v1::JOB_KIND_EVALUATE) {
    // Units of one variant: map to evaluation shards.
    const int64_t per = j.record.units_per_variant();
    const int64_t total = j.record.evaluate().eval_sampling().num_samples();
    const int64_t b = begin % per, e = (end - 1) % per + 1;
    return std::min(total, e * size) - std::min(total, b * size);
  }
  const int64_t total = j.record.job().progress().samples_total();
  return std::min(total, end * size) - std::min(total, begin * size);
}

// ---------------------------------------------------------------- validation

absl::Status Coordinator::ValidateSpec(v1::JobSpec& spec, v1::Job& job,
                                       std::vector<std::string>* names, std::vector<int64_t>* in,
                                       std::vector<int64_t>* out) const {
  v1::SamplingOptions* s = spec.mutable_sampling();
  if (!s->has_num_samples()) s->set_num_samples(512);
  if (!s->has_seq_len()) s->set_seq_len(512);
  if (s->mode().empty()) s->set_mode("document");
  if (s->order().empty()) s->set_order("shuffled");
  if (!s->has_seed()) s->set_seed(42);
  if (spec.shard_size() == 0) spec.set_shard_size(16);
  if (spec.report_interval_seconds() == 0) spec.set_report_interval_seconds(30);
  if (spec.batch_size() == 0) spec.set_batch_size(8);
  auto range = [](const char* name, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " = ", v, " is out of range [", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  };
  QCAL_RETURN_IF_ERROR(range("sampling.num_samples", s->num_samples(), 1, kMaxSamples));
  QCAL_RETURN_IF_ERROR(range("sampling.seq_len", s->seq_len(), 1, 1 << 20));
  QCAL_RETURN_IF_ERROR(range("sampling.skip_docs", s->skip_docs(), 0, int64_t{1} << 40));
  QCAL_RETURN_IF_ERROR(range("shard_size", spec.shard_size(), 1, 4096));
  QCAL_RETURN_IF_ERROR(range("report_interval_seconds", spec.report_interval_seconds(), 1, 3600));
  QCAL_RETURN_IF_ERROR(range("batch_size", spec.batch_size(), 1, 1024));
  if (s->mode() != "document" && s->mode() != "packed") {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.mode \"", s->mode(), "\" is not document or packed"));
  }
  if (s->order() != "sequential" && s->order() != "shuffled") {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.order \"", s->order(), "\" is not sequential or shuffled"));
  }
  if (spec.display_name().size() > 256) {
    return absl::InvalidArgumentError("display_name is longer than 256 bytes");
  }

  QCAL_ASSIGN_OR_RETURN(std::string model, paths_.Resolve("spec.model", spec.model()));
  QCAL_ASSIGN_OR_RETURN(std::string corpus, paths_.Resolve("spec.corpus", spec.corpus()));
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model));
  if (s->seq_len() > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.seq_len ", s->seq_len(),
                                                   " exceeds the model's max_position_embeddings ",
                                                   config.max_position_embeddings));
  }
  QCAL_RETURN_IF_ERROR(CheckModelFiles(model, config));

  corpus::CorpusReadOptions read;
  read.skip_bad_records = s->skip_bad_lines();
  QCAL_ASSIGN_OR_RETURN(corpus::CorpusStats cs, corpus::ValidateCorpus(corpus, read));
  const int64_t usable = cs.documents - s->skip_docs();
  if (usable <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("spec.corpus ", corpus, " has no usable document",
                                                   s->skip_docs() ? " after sampling.skip_docs" : ""));
  }
  if (s->mode() == "document" && usable < s->num_samples()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.corpus ", corpus, " has ", usable, " usable documents, fewer than sampling.num_samples ",
        s->num_samples(), " (document mode takes one sample per document)"));
  }
  job.set_resolved_model(model);
  job.set_resolved_corpus(corpus);
  job.set_architecture(config.model_type);
  for (const LinearModule& l : LinearModules(config)) {
    names->push_back(l.name);
    in->push_back(l.in_features);
    out->push_back(l.out_features);
  }
  job.set_linear_modules(static_cast<int32_t>(names->size()));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- client API

absl::StatusOr<v1::Job> Coordinator::SubmitJob(const v1::SubmitJobRequest& request) {
  if (request.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  }
  if (!request.request_id().empty()) {
    absl::MutexLock lock(&mu_);
    auto it = request_ids_.find(request.request_id());
    if (it != request_ids_.end()) {
      const JobView& j = jobs_.at(it->second);
      v1::JobSpec original = request.spec();
      // Compare against the spec as submitted (defaults may have been filled in).
      v1::Job scratch;
      std::vector<std::string> n;
      std::vector<int64_t> a, b;
      if (!ValidateSpec(original, scratch, &n, &a, &b).ok() ||
          !google::protobuf::util::MessageDifferencer::Equals(original, j.record.job().spec())) {
        return absl::AlreadyExistsError(absl::StrCat("request_id \"", request.request_id(),
                                                     "\" was used for job ", it->second,
                                                     " with a different spec"));
      }
      return j.record.job();
    }
  }
  // Validation reads files: do it outside the lock.
  v1::JobSpec spec = request.spec();
  v1::Job job;
  std::vector<std::string> names;
  std::vector<int64_t> in, out;
  QCAL_RETURN_IF_ERROR(ValidateSpec(spec, job, &names, &in, &out));

  std::string id;
  {
    absl::MutexLock lock(&mu_);
    int64_t active = 0;
    for (const auto& [_, j] : jobs_) active += !IsFinal(j.record.job().state());
    if (active >= options_.max_active_jobs) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many active jobs (", active, "); wait for some to finish"));
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "job-%06" PRId64 "-", next_job_seq_);
    id = buf + NewId("").substr(12);
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
    job = jobs_.at(id).record.job();
    if (!request.request_id().empty()) request_ids_[request.request_id()] = id;
  }
  return job;
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
    if (it->second.record.kind() != v1::JOB_KIND_CALIBRATE) continue;
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

absl::Status Coordinator::StreamStats(const std::string& job_id, bool allow_partial,
                                      int64_t max_chunk_bytes,
                                      const std::function<bool(const v1::JobStatsChunk&)>& fn) {
  v1::Job job;
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
    if (it->second.record.kind() != v1::JOB_KIND_CALIBRATE) {
      return absl::FailedPreconditionError(absl::StrCat(job_id, " is not a calibration job"));
    }
    job = it->second.record.job();
    names.assign(it->second.record.linear_names().begin(), it->second.record.linear_names().end());
  }
  if (job.state() != v1::JOB_CALIBRATED && !allow_partial) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ",
                                                      v1::JobState_Name(job.state()),
                                                      ", not calibrated (ask for partial statistics)"));
  }
  v1::JobStatsChunk chunk;
  chunk.set_job_id(job_id);
  chunk.set_state(job.state());
  chunk.set_tokens(job.progress().tokens_done());
  chunk.set_samples(job.progress().samples_done());
  int64_t bytes = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kStats, StatsKey(job_id, i)));
    if (!value) continue;  // no report yet (partial)
    if (!chunk.add_linears()->ParseFromString(*value)) return Corrupt("stats of " + names[i]);
    bytes += static_cast<int64_t>(value->size());
    if (bytes >= max_chunk_bytes) {
      if (!fn(chunk)) return absl::OkStatus();
      chunk = v1::JobStatsChunk();
      bytes = 0;
    }
  }
  if (chunk.linears_size() > 0 || !chunk.job_id().empty()) fn(chunk);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Coordinator::Watch(const std::string& job_id,
                                           std::function<void(const v1::Job&)> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!jobs_.count(job_id)) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  }
  absl::MutexLock lock(&watch_mu_);
  const int64_t h = next_watch_++;
  watchers_[h] = {job_id, std::move(fn)};
  return h;
}

void Coordinator::Unwatch(int64_t handle) {
  absl::MutexLock lock(&watch_mu_);
  watchers_.erase(handle);
}

void Coordinator::Notify(const std::set<std::string>& jobs) {
  if (jobs.empty()) return;
  std::map<std::string, v1::Job> snapshot;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& id : jobs) {
      auto it = jobs_.find(id);
      if (it != jobs_.end()) snapshot[id] = it->second.record.job();
    }
  }
  std::vector<std::pair<std::function<void(const v1::Job&)>, const v1::Job*>> calls;
  {
    absl::MutexLock lock(&watch_mu_);
    for (const auto& [h, w] : watchers_) {
      auto it = snapshot.find(w.first);
      if (it != snapshot.end()) calls.emplace_back(w.second, &it->second);
    }
  }
  for (auto& [fn, job] : calls) fn(*job);
}

// ---------------------------------------------------------------- evaluations

absl::StatusOr<stats::StatsSet> Coordinator::ReadStats(const std::string& job_id, int64_t linears) {
  v1::StatsSetProto all;
  for (int64_t i = 0; i < linears; ++i) {
    QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kStats, StatsKey(job_id, i)));
    if (!value) return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " has no statistics for linear ", i));
    if (!all.add_linears()->ParseFromString(*value)) return Corrupt("stats of " + job_id);
  }
  return stats::StatsSetFromProto(all);
}

absl::StatusOr<v1::Operation> Coordinator::Evaluate(const v1::EvaluateRequest& request) {
  v1::EvaluateRequest req = request;
  QCAL_RETURN_IF_ERROR(NormalizeEvaluateRequest(&req));
  v1::Job parent;
  int64_t linears = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(req.job_id());
    if (it == jobs_.end() || it->second.record.kind() != v1::JOB_KIND_CALIBRATE) {
      return absl::NotFoundError(absl::StrCat("no job \"", req.job_id(), "\""));
    }
    parent = it->second.record.job();
    linears = it->second.record.linear_names_size();
  }
  if (parent.state() != v1::JOB_CALIBRATED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", parent.id(), " is ",
                                                      v1::JobState_Name(parent.state()),
                                                      "; only a calibrated job can be evaluated"));
  }
  if (req.shard_size() == 0) req.set_shard_size(16);
  if (req.batch_size() == 0) req.set_batch_size(parent.spec().batch_size());
  if (req.shard_size() < 1 || req.shard_size() > 4096 || req.batch_size() < 1 || req.batch_size() > 1024) {
    return absl::InvalidArgumentError("shard_size must be in [1, 4096] and batch_size in [1, 1024]");
  }
  v1::SamplingOptions* s = req.mutable_eval_sampling();
  if (!s->has_num_samples()) s->set_num_samples(256);
  if (!s->has_seq_len()) s->set_seq_len(parent.spec().sampling().seq_len());
  if (s->mode().empty()) s->set_mode("document");
  if (s->order().empty()) s->set_order("shuffled");
  if (!s->has_seed()) s->set_seed(42);
  if (s->num_samples() < 1 || s->num_samples() > kMaxSamples) {
    return absl::InvalidArgumentError(absl::StrCat("eval_sampling.num_samples = ", s->num_samples(),
                                                   " is out of range [1, ", kMaxSamples, "]"));
  }
  if (s->seq_len() < 2 || s->seq_len() > (1 << 20)) {
    return absl::InvalidArgumentError("eval_sampling.seq_len must be in [2, 1048576] (the last token is the label)");
  }
  if ((s->mode() != "document" && s->mode() != "packed") ||
      (s->order() != "sequential" && s->order() != "shuffled") || s->skip_docs() < 0) {
    return absl::InvalidArgumentError("eval_sampling: mode must be document|packed, order sequential|shuffled");
  }
  if (req.eval_corpus().empty()) return absl::InvalidArgumentError("eval_corpus is empty");
  QCAL_ASSIGN_OR_RETURN(std::string corpus, paths_.Resolve("eval_corpus", req.eval_corpus()));
  corpus::CorpusReadOptions read;
  read.skip_bad_records = s->skip_bad_lines();
  QCAL_ASSIGN_OR_RETURN(corpus::CorpusStats cs, corpus::ValidateCorpus(corpus, read));
  const int64_t usable = cs.documents - s->skip_docs();
  if (usable <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("eval_corpus ", corpus, " has no usable sample"));
  }
  if (s->mode() == "document" && usable < s->num_samples()) {
    return absl::InvalidArgumentError(absl::StrCat("eval_corpus ", corpus, " has ", usable,
                                                   " usable documents, fewer than eval_sampling.num_samples ",
                                                   s->num_samples()));
  }
  req.set_eval_corpus(corpus);
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(parent.resolved_model()));
  if (s->seq_len() > config.max_position_embeddings) {
    return absl::InvalidArgumentError("eval_sampling.seq_len exceeds the model's max_position_embeddings");
  }
  QCAL_ASSIGN_OR_RETURN(stats::StatsSet stats, ReadStats(parent.id(), linears));
  QCAL_ASSIGN_OR_RETURN(EvaluationPlan plan, PlanEvaluation(req, stats, config));

  v1::Operation op;
  {
    absl::MutexLock lock(&mu_);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "eval-%06" PRId64 "-", next_job_seq_);
    const std::string id = buf + NewId("").substr(12);
    JobView j;
    v1::JobRecord& r = j.record;
    r.set_kind(v1::JOB_KIND_EVALUATE);
    r.set_parent_job(parent.id());
    *r.mutable_evaluate() = req;
    for (auto& v : plan.variants) {
      v.set_eval_corpus(corpus);
      *v.mutable_eval_sampling() = *s;
      *r.add_variants() = v;
    }
    *r.mutable_evaluate_response() = plan.response;
    const int64_t per = (s->num_samples() + req.shard_size() - 1) / req.shard_size();
    r.set_units_per_variant(per);
    r.set_shard_size(req.shard_size());
    r.set_next_task_seq(1);
    v1::Job* job = r.mutable_job();
    job->set_id(id);
    job->set_state(v1::JOB_PENDING);
    *job->mutable_spec() = parent.spec();
    job->mutable_spec()->set_batch_size(req.batch_size());
    job->set_resolved_model(parent.resolved_model());
    job->set_resolved_corpus(corpus);
    job->set_architecture(parent.architecture());
    const int64_t units = per * r.variants_size();
    job->mutable_progress()->set_shards_total(units);
    job->mutable_progress()->set_samples_total(s->num_samples() * r.variants_size());
    *job->mutable_create_time() = ToProto(options_.now());
    QCAL_RETURN_IF_ERROR(InsertNewJob(std::move(j), units));
    op.set_name("operations/" + id);
    v1::EvaluateMetadata meta;
    meta.set_job_id(parent.id());
    meta.set_units_total(units);
    op.mutable_metadata()->PackFrom(meta);
  }
  return op;
}

absl::Status Coordinator::FinishEvaluationLocked(JobView& j) {
  const int64_t per = j.record.units_per_variant();
  std::vector<v1::EvaluatePartial> sums(j.record.variants_size());
  // Sum in unit order: the result does not depend on how units were grouped.
  for (int64_t u = 0; u < static_cast<int64_t>(j.shards.size()); ++u) {
    v1::EvaluatePartial p;
    if (!p.ParseFromString(j.shards[u].result())) return Corrupt("evaluation unit result");
    v1::EvaluatePartial& sum = sums[u / per];
    sum.set_hits(sum.hits() + p.hits());
    sum.set_total(sum.total() + p.total());
    sum.set_nll_sum(sum.nll_sum() + p.nll_sum());
    sum.set_predictions(sum.predictions() + p.predictions());
  }
  return FinishEvaluation(j.record.evaluate(), sums, j.record.mutable_evaluate_response());
}

// ---------------------------------------------------------------- operations

namespace {

absl::StatusOr<std::string> OperationId(const std::string& name) {
  if (!absl::StartsWith(name, "operations/") || name.size() == 11 || name.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("operation name \"", name, "\" is not \"operations/<id>\""));
  }
  return name.substr(11);
}

}  // namespace

absl::StatusOr<v1::Operation> Coordinator::GetOperation(const std::string& name) {
  QCAL_ASSIGN_OR_RETURN(std::string id, OperationId(name));
  QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kOperations, id));
  if (!value) return absl::NotFoundError(absl::StrCat("no operation \"", name, "\""));
  v1::OperationRecord r;
  if (!r.ParseFromString(*value)) return Corrupt("operations/" + id);
  return r.operation();
}

absl::StatusOr<v1::ListOperationsResponse> Coordinator::ListOperations(
    const v1::ListOperationsRequest& req) {
  int page = req.page_size() == 0 ? 100 : req.page_size();
  if (page < 0 || page > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", page, " is out of range [1, 1000]"));
  }
  std::string job;
  if (!req.filter().empty()) {
    if (!absl::StartsWith(req.filter(), "job=")) {
      return absl::InvalidArgumentError(
          absl::StrCat("filter \"", req.filter(), "\" is not empty or \"job=<id>\""));
    }
    job = req.filter().substr(4);
  }
  std::vector<v1::OperationRecord> all;
  absl::Status st;
  QCAL_RETURN_IF_ERROR(store_->Scan(Family::kOperations, "", [&](const std::string& key,
                                                                  const std::string& value) {
    v1::OperationRecord r;
    if (!r.ParseFromString(value)) {
      st = Corrupt("operations/" + key);
      return false;
    }
    if (job.empty() || r.job_id() == job) all.push_back(std::move(r));
    return true;
  }));
  QCAL_RETURN_IF_ERROR(st);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.create_ms() != b.create_ms() ? a.create_ms() > b.create_ms()
                                          : a.operation().name() > b.operation().name();
  });
  size_t start = 0;
  if (!req.page_token().empty()) {
    if (!absl::SimpleAtoi(req.page_token(), &start) || start > all.size()) {
      return absl::InvalidArgumentError("page_token is not one this server returned");
    }
  }
  v1::ListOperationsResponse resp;
  for (size_t i = start; i < all.size() && resp.operations_size() < page; ++i) {
    *resp.add_operations() = all[i].operation();
  }
  if (start + resp.operations_size() < all.size()) {
    resp.set_next_page_token(absl::StrCat(start + resp.operations_size()));
  }
  return resp;
}

absl::Status Coordinator::CancelOperation(const std::string& name) {
  QCAL_ASSIGN_OR_RETURN(std::string id, OperationId(name));
  bool is_job = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    is_job = it != jobs_.end() && it->second.record.kind() != v1::JOB_KIND_CALIBRATE;
    if (is_job && IsFinal(it->second.record.job().state())) return absl::OkStatus();
  }
  if (is_job) return CancelJob(id).status();  // its operation follows the job
  absl::MutexLock lock(&mu_);
  QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kOperations, id));
  if (!value) return absl::NotFoundError(absl::StrCat("no operation \"", name, "\""));
  v1::OperationRecord r;
  if (!r.ParseFromString(*value)) return Corrupt("operations/" + id);
  if (r.operation().done()) return absl::OkStatus();
  r.mutable_operation()->set_done(true);
  r.mutable_operation()->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
  r.mutable_operation()->mutable_error()->set_message("cancelled by CancelOperation");
  WriteBatch b;
  b.Put(Family::kOperations, id, r.SerializeAsString());
  QCAL_RETURN_IF_ERROR(store_->Write(b));
  operations_changed_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<v1::Operation> Coordinator::WaitOperation(const std::string& name,
                                                         absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + std::min(timeout, absl::Seconds(60));
  while (true) {
    QCAL_ASSIGN_OR_RETURN(v1::Operation op, GetOperation(name));
    if (op.done() || absl::Now() >= deadline) return op;
    absl::MutexLock lock(&mu_);
    operations_changed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Seconds(1)));
  }
}

// ---------------------------------------------------------------- worker API

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
    *share->mutable_last_report_time() = TimeUtil::MillisecondsToTimestamp(ToMs(now));
    if (header.compute_seconds() > 0) {
      const double sps = header.samples() / header.compute_seconds();
      const double old = next.record.samples_per_second();
      next.record.set_samples_per_second(old > 0 ? 0.5 * old + 0.5 * sps : sps);
      const double mine = share->samples_per_second();
      share->set_samples_per_second(mine > 0 ? 0.5 * mine + 0.5 * sps : sps);
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
  const absl::Time cutoff = options_.now() - options_.lease_duration;
  int64_t live = 0;
  for (const auto& [id, w] : workers_) live += w.last_seen >= cutoff;
  metrics_->SetWorkers(live);
}

}  // namespace qcal::server
