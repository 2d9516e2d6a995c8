// Test-only: an in-process CalibrationService + Operations server on loopback with
// canned answers, for driving the `qcal` commands end to end without a
// coordinator. Header-only; linked into tests and the fake_coordinator helper only.
#ifndef QCAL_CLIENT_TEST_UTIL_FAKE_CALIBRATION_SERVER_H_
#define QCAL_CLIENT_TEST_UTIL_FAKE_CALIBRATION_SERVER_H_

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/stats/stats_proto.h"
#include "common/stats/stats_set.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/operations.grpc.pb.h"

namespace qcal::client::testing {

// A small StatsSet from real TensorStats::AddRows on heavy-tailed data with outlier
// channels: deterministic for a seed.
inline stats::StatsSet MakeStatsSet(uint32_t seed = 7) {
  struct Shape {
    const char* name;
    int64_t in, out, rows;
  };
  const Shape shapes[] = {{"model.layers.0.self_attn.q_proj", 32, 32, 64},
                          {"model.layers.0.mlp.down_proj", 64, 32, 64},
                          {"lm_head", 32, 100, 16}};
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  auto fill = [&](int64_t rows, int64_t channels) {
    std::vector<float> v(static_cast<size_t>(rows * channels));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < channels; ++c) {
        float x = heavy(rng);
        if (c % 17 == 3) x *= 80.0f;  // outlier channels
        v[static_cast<size_t>(r * channels + c)] = x;
      }
    }
    return v;
  };
  stats::StatsSet set;
  for (const Shape& s : shapes) {
    stats::LinearStats* l = *set.GetOrCreate(s.name, s.in, s.out);
    std::vector<float> x = fill(s.rows, s.in), y = fill(s.rows, s.out);
    (void)l->input.AddRows(x.data(), s.rows);
    (void)l->output.AddRows(y.data(), s.rows);
  }
  (void)set.AddTokens(64);
  return set;
}

// The set as GetJobStats chunks: `per_chunk` linears per chunk, header in the first.
inline std::vector<v1::JobStatsChunk> ToChunks(const stats::StatsSet& set,
                                               const std::string& job_id,
                                               size_t per_chunk = 2) {
  v1::StatsSetProto proto;
  stats::ToProto(set, &proto);
  std::vector<v1::JobStatsChunk> chunks;
  for (int i = 0; i < proto.linears_size(); ++i) {
    if (i % per_chunk == 0) {
      chunks.emplace_back();
      if (chunks.size() == 1) {
        chunks[0].set_job_id(job_id);
        chunks[0].set_state(v1::JOB_CALIBRATED);
        chunks[0].set_tokens(proto.tokens());
        chunks[0].set_samples(16);
      }
    }
    *chunks.back().add_linears() = proto.linears(i);
  }
  return chunks;
}

inline v1::Job MakeJob(const std::string& id, v1::JobState state, int64_t done,
                       int64_t total) {
  v1::Job job;
  job.set_id(id);
  job.set_state(state);
  job.mutable_spec()->set_model("models/tiny");
  job.mutable_spec()->set_corpus("corpus.jsonl");
  job.mutable_progress()->set_shards_total(total);
  job.mutable_progress()->set_shards_done(done);
  job.mutable_progress()->set_samples_total(total * 4);
  job.mutable_progress()->set_samples_done(done * 4);
  job.mutable_progress()->set_tokens_done(done * 512);
  job.mutable_create_time()->set_seconds(1'700'000'000);
  job.mutable_update_time()->set_seconds(1'700'000'000 + done * 10);
  job.set_version(done + 1);
  return job;
}

// Job "<id>" goes PENDING, RUNNING 1..shards-1, then `final_state`.
inline std::vector<v1::Job> JobHistory(const std::string& id, int64_t shards,
                                       v1::JobState final_state) {
  std::vector<v1::Job> history = {MakeJob(id, v1::JOB_PENDING, 0, shards)};
  for (int64_t done = 1; done < shards; ++done) {
    history.push_back(MakeJob(id, v1::JOB_RUNNING, done, shards));
  }
  v1::Job last = MakeJob(id, final_state, final_state == v1::JOB_CALIBRATED ? shards
                                                                              : shards - 1,
                         shards);
  if (final_state == v1::JOB_FAILED) {
    last.set_error("shard 3 failed 3 times:\nout of memory");
  }
  history.push_back(last);
  return history;
}

class FakeCalibrationService final : public v1::CalibrationService::Service,
                                     public v1::Operations::Service {
 public:
  // Requests need "authorization: Bearer <token>" when non-empty.
  std::string required_token;
  // The id SubmitJob gives, and the last state of the submitted job's history
  // (JOB_RUNNING: it never ends).
  std::string next_job_id = "job-000001-test";
  v1::JobState submitted_final_state = v1::JOB_CALIBRATED;
  // Statistics GetJobStats returns for the submitted job.
  std::optional<stats::StatsSet> submitted_stats;
  // WatchJob stays open after the last version until the client cancels.
  bool hold_watch_open = false;

  // Known jobs: their versions, oldest first (GetJob answers the last one).
  void AddJob(std::vector<v1::Job> history) {
    absl::MutexLock lock(&mu_);
    const std::string id = history.back().id();
    order_.push_back(id);
    jobs_[id] = std::move(history);
  }
  void SetStats(const std::string& job_id, std::vector<v1::JobStatsChunk> chunks) {
    absl::MutexLock lock(&mu_);
    stats_[job_id] = std::move(chunks);
  }
  void AddOperation(std::vector<v1::Operation> versions) {
    absl::MutexLock lock(&mu_);
    operations_[versions[0].name()] = std::move(versions);
  }
  v1::SubmitJobRequest last_submit() {
    absl::MutexLock lock(&mu_);
    return last_submit_;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<std::string> cancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::Job* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    if (request->spec().model().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec.model is empty");
    }
    std::vector<v1::Job> history = JobHistory(next_job_id, 4, submitted_final_state);
    if (submitted_final_state == v1::JOB_RUNNING) history.pop_back();
    for (v1::Job& job : history) *job.mutable_spec() = request->spec();
    *response = history[0];
    {
      absl::MutexLock lock(&mu_);
      last_submit_ = *request;
    }
    if (submitted_stats.has_value()) {
      SetStats(next_job_id, ToChunks(*submitted_stats, next_job_id));
    }
    AddJob(std::move(history));
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request->job_id());
    if (it == jobs_.end()) return NotFound(request->job_id());
    *response = it->second.back();
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::vector<const v1::Job*> matching;
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      const v1::Job& job = jobs_[*it].back();
      if (request->state() == v1::JOB_STATE_UNSPECIFIED || job.state() == request->state()) {
        matching.push_back(&job);
      }
    }
    size_t start = 0;
    if (!request->page_token().empty() &&
        !absl::SimpleAtoi(request->page_token(), &start)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
    }
    const size_t size = request->page_size() > 0 ? request->page_size() : 50;
    for (size_t i = start; i < matching.size() && i < start + size; ++i) {
      *response->add_jobs() = *matching[i];
    }
    if (start + size < matching.size()) {
      response->set_next_page_token(absl::StrCat(start + size));
    }
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::Job>* writer) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    std::vector<v1::Job> history;
    {
      absl::MutexLock lock(&mu_);
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return NotFound(request->job_id());
      history = it->second;
    }
    for (const v1::Job& job : history) {
      if (!writer->Write(job)) break;
    }
    while (hold_watch_open && !context->IsCancelled()) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request->job_id());
    if (it == jobs_.end()) return NotFound(request->job_id());
    v1::Job job = it->second.back();
    if (job.state() == v1::JOB_CALIBRATED || job.state() == v1::JOB_FAILED ||
        job.state() == v1::JOB_CANCELLED) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("job ", job.id(), " has already ended"));
    }
    job.set_state(v1::JOB_CANCELLED);
    it->second.push_back(job);
    cancelled_.push_back(job.id());
    *response = job;
    return grpc::Status::OK;
  }

  grpc::Status GetJobStats(grpc::ServerContext* context,
                           const v1::GetJobStatsRequest* request,
                           grpc::ServerWriter<v1::JobStatsChunk>* writer) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    std::vector<v1::JobStatsChunk> chunks;
    {
      absl::MutexLock lock(&mu_);
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return NotFound(request->job_id());
      if (it->second.back().state() != v1::JOB_CALIBRATED && !request->allow_partial()) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("job ", request->job_id(), " is not calibrated"));
      }
      auto stats = stats_.find(request->job_id());
      if (stats != stats_.end()) chunks = stats->second;
    }
    for (const v1::JobStatsChunk& chunk : chunks) {
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status GetOperation(grpc::ServerContext* context,
                            const v1::GetOperationRequest* request,
                            v1::Operation* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = operations_.find(request->name());
    if (it == operations_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("operation ", request->name(), " not found"));
    }
    *response = it->second.front();
    return grpc::Status::OK;
  }

  // Each call advances the operation by one version.
  grpc::Status WaitOperation(grpc::ServerContext* context,
                             const v1::WaitOperationRequest* request,
                             v1::Operation* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = operations_.find(request->name());
    if (it == operations_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("operation ", request->name(), " not found"));
    }
    if (it->second.size() > 1) it->second.erase(it->second.begin());
    *response = it->second.front();
    return grpc::Status::OK;
  }

 private:
  grpc::Status Check(grpc::ServerContext* context) {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
    }
    if (required_token.empty()) return grpc::Status::OK;
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing bearer token");
    }
    if (std::string(it->second.data(), it->second.size()) != "Bearer " + required_token) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token");
    }
    return grpc::Status::OK;
  }

  static grpc::Status NotFound(const std::string& id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("job ", id, " not found"));
  }

  absl::Mutex mu_;
  std::map<std::string, std::vector<v1::Job>> jobs_;
  std::vector<std::string> order_;
  std::map<std::string, std::vector<v1::JobStatsChunk>> stats_;
  std::map<std::string, std::vector<v1::Operation>> operations_;
  v1::SubmitJobRequest last_submit_;
  std::vector<std::string> cancelled_;
  int calls_ = 0;
};

// The fake on 127.0.0.1:<free port>.
class FakeServer {
 public:
  explicit FakeServer(FakeCalibrationService* service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(static_cast<v1::CalibrationService::Service*>(service));
    builder.RegisterService(static_cast<v1::Operations::Service*>(service));
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { Shutdown(); }
  void Shutdown() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      server_->Wait();
      server_ = nullptr;
    }
  }
  bool ok() const { return server_ != nullptr && port_ > 0; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  grpc::Server* server() { return server_.get(); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace qcal::client::testing

#endif  // QCAL_CLIENT_TEST_UTIL_FAKE_CALIBRATION_SERVER_H_
