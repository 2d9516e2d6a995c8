// Test-only: an in-process CalibrationService + Operations server on loopback with
// canned answers, for driving the `qcal` commands end to end without a
// coordinator. Header-only; linked into tests and the fake_coordinator helper only.
#ifndef QCAL_CLIENT_TEST_UTIL_FAKE_CALIBRATION_SERVER_H_
#define QCAL_CLIENT_TEST_UTIL_FAKE_CALIBRATION_SERVER_H_

#include <algorithm>
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
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/job_state.h"
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

// Statistics whose clip decisions are known by construction. Every tensor has one
// channel and 2000 rows: 1999 values 1.0 and, where listed, one outlier X, so in abs
// mode ori = X (or 1) and top_0_1 (the value at rank int(0.999 * 2000) - 1 = 1997 of
// the sorted values) = 1, and a side is clipped at threshold t iff t > X.
// Linears in forward order: for layers 0..3 q_proj then down_proj, then lm_head.
//   model.layers.0.mlp.down_proj  input X = 2,   output X = 20
//   model.layers.1.mlp.down_proj  input X = 50
//   model.layers.2.self_attn.q_proj input X = 40 (not a down projection)
//   model.layers.2.mlp.down_proj  input X = 5
//   model.layers.3.mlp.down_proj  input X = 100
// At t = 10: shadow layers {0, 1, 3}; not clipped input: layers.1.mlp.down_proj,
// layers.2.self_attn.q_proj, layers.3.mlp.down_proj; output: layers.0.mlp.down_proj.
// At t = 3: {0, 1, 2, 3}. At t = 200: {}.
inline stats::StatsSet MakeOutlierStatsSet() {
  constexpr int64_t kRows = 2000;
  auto column = [](float outlier) {
    std::vector<float> v(kRows, 1.0f);
    if (outlier > 0) v[kRows / 2] = outlier;
    return v;
  };
  struct Linear {
    std::string name;
    float input_outlier, output_outlier;
  };
  std::vector<Linear> linears;
  const float down_in[] = {2, 50, 5, 100};
  for (int i = 0; i < 4; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i);
    linears.push_back({layer + ".self_attn.q_proj", i == 2 ? 40.0f : 0.0f, 0});
    linears.push_back({layer + ".mlp.down_proj", down_in[i], i == 0 ? 20.0f : 0.0f});
  }
  linears.push_back({"lm_head", 0, 0});
  stats::StatsSet set;
  for (const Linear& l : linears) {
    stats::LinearStats* s = *set.GetOrCreate(l.name, 1, 1);
    const std::vector<float> x = column(l.input_outlier), y = column(l.output_outlier);
    (void)s->input.AddRows(x.data(), kRows);
    (void)s->output.AddRows(y.data(), kRows);
  }
  (void)set.AddTokens(kRows);
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

// A canned evaluation of a model whose linears are the down projections of layers 0,
// 1, 2 and 26 and lm_head, on 128 samples (abs mode, budget 0.01 on res):
//   threshold  res        ppl   not clipped input     not clipped output  shadow
//   float      0.6328125  12.25
//   1          0.5        20.5  all 5                 all 5               {0, 1, 2, 26}
//   8          0.625      12.5  layers 1, 26          layer 2             {1, 2, 26}
//   32         0.6015625  13    layer 26              -                   {26}
//   10000000   0.25       80    -                     -                   {}
// Recommended: 8 (the only threshold within 0.01 of the float res).
inline v1::EvaluateResponse MakeEvaluateResponse(const std::string& job_id) {
  auto name = [](int layer) {
    return absl::StrCat("model.layers.", layer, ".mlp.down_proj");
  };
  const std::vector<std::string> all = {name(0), name(1), name(2), name(26), "lm_head"};
  struct Row {
    double threshold, res, ppl;
    std::vector<std::string> no_in, no_out;
    std::vector<int> shadow;
  };
  const std::vector<Row> rows = {
      {1, 0.5, 20.5, all, all, {0, 1, 2, 26}},
      {8, 0.625, 12.5, {name(1), name(26)}, {name(2)}, {1, 2, 26}},
      {32, 0.6015625, 13, {name(26)}, {}, {26}},
      {10000000, 0.25, 80, {}, {}, {}},
  };
  v1::EvaluateResponse response;
  response.set_job_id(job_id);
  response.set_mode("abs");
  response.set_float_res(0.6328125);
  response.set_float_perplexity(12.25);
  response.set_samples(128);
  for (const Row& row : rows) {
    v1::ThresholdResult* r = response.add_thresholds();
    r->set_threshold(row.threshold);
    const int n = static_cast<int>(all.size());
    r->set_clip_input_num(n - static_cast<int>(row.no_in.size()));
    r->set_no_clip_input_num(static_cast<int>(row.no_in.size()));
    r->set_clip_output_num(n - static_cast<int>(row.no_out.size()));
    r->set_no_clip_output_num(static_cast<int>(row.no_out.size()));
    for (const std::string& l : row.no_in) r->add_no_clip_input_name(l);
    for (const std::string& l : row.no_out) r->add_no_clip_output_name(l);
    r->set_res(row.res);
    r->set_perplexity(row.ppl);
    for (int layer : row.shadow) r->add_shadow_layers(layer);
    for (const std::string& l : all) {
      v1::LinearClip* c = r->add_linears();
      c->set_name(l);
      c->set_clip_input(std::find(row.no_in.begin(), row.no_in.end(), l) == row.no_in.end());
      c->set_clip_output(std::find(row.no_out.begin(), row.no_out.end(), l) ==
                         row.no_out.end());
    }
  }
  response.set_recommended_threshold(8);
  response.set_recommendation_note(
      "threshold 8 has the fewest shadow layers (3) within 0.01 of the float res");
  return response;
}

// An evaluation operation's versions: 0/10 units, 4/10, then done with `response`, or
// with an INTERNAL `error` when it is not empty.
inline std::vector<v1::Operation> EvaluationVersions(const std::string& name,
                                                     const std::string& job_id,
                                                     const v1::EvaluateResponse& response,
                                                     const std::string& error = "") {
  std::vector<v1::Operation> versions;
  for (int done : {0, 4, 10}) {
    v1::Operation op;
    op.set_name(name);
    v1::EvaluateMetadata meta;
    meta.set_job_id(job_id);
    meta.set_units_total(10);
    meta.set_units_done(done == 10 && !error.empty() ? 6 : done);
    op.mutable_metadata()->PackFrom(meta);
    if (done == 10) {
      op.set_done(true);
      if (error.empty()) {
        op.mutable_response()->PackFrom(response);
      } else {
        op.mutable_error()->set_code(static_cast<int>(grpc::StatusCode::INTERNAL));
        op.mutable_error()->set_message(error);
      }
    }
    versions.push_back(std::move(op));
  }
  return versions;
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
  // Evaluate's operation ends with this INTERNAL error when not empty.
  std::string evaluate_error;

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
  // An operation's versions, oldest first: GetOperation and ListOperations answer the
  // current one, each WaitOperation moves to the next. `job_id` is what
  // ListOperations' filter "job=<id>" matches; added last = newest.
  void AddOperation(std::vector<v1::Operation> versions, const std::string& job_id = "") {
    absl::MutexLock lock(&mu_);
    const std::string name = versions[0].name();
    operation_order_.push_back(name);
    operation_job_[name] = job_id;
    operations_[name] = std::move(versions);
  }
  v1::EvaluateRequest last_evaluate() {
    absl::MutexLock lock(&mu_);
    return last_evaluate_;
  }
  std::vector<std::string> cancelled_operations() {
    absl::MutexLock lock(&mu_);
    return cancelled_operations_;
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
    if (v1::IsFinalJobState(job.state())) {
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

  // The job must be CALIBRATED; the operation is "operations/eval-<n>-test" with the
  // versions of EvaluationVersions for MakeEvaluateResponse.
  grpc::Status Evaluate(grpc::ServerContext* context, const v1::EvaluateRequest* request,
                        v1::Operation* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    std::string name;
    {
      absl::MutexLock lock(&mu_);
      last_evaluate_ = *request;
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return NotFound(request->job_id());
      if (it->second.back().state() != v1::JOB_CALIBRATED) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("job ", request->job_id(),
                                         " is not calibrated; only a calibrated job can "
                                         "be evaluated"));
      }
      name = absl::StrCat("operations/eval-", operations_.size() + 1, "-test");
    }
    std::vector<v1::Operation> versions = EvaluationVersions(
        name, request->job_id(), MakeEvaluateResponse(request->job_id()), evaluate_error);
    *response = versions[0];
    AddOperation(std::move(versions), request->job_id());
    return grpc::Status::OK;
  }

  // The job must be CALIBRATED; the operation "operations/export-<n>-test" is done at
  // once with an ExportResponse naming request.output (threshold 8 for
  // "recommended"), no files written.
  grpc::Status Export(grpc::ServerContext* context, const v1::ExportRequest* request,
                      v1::Operation* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    std::string name;
    {
      absl::MutexLock lock(&mu_);
      exports_.push_back(*request);
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return NotFound(request->job_id());
      if (it->second.back().state() != v1::JOB_CALIBRATED) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("job ", request->job_id(), " is not calibrated"));
      }
      name = absl::StrCat("operations/export-", operations_.size() + 1, "-test");
    }
    v1::Operation op;
    op.set_name(name);
    op.set_done(true);
    v1::ExportResponse r;
    r.set_job_id(request->job_id());
    r.set_output_dir(request->output());
    r.set_format(request->format().empty() ? "mllm" : request->format());
    r.set_threshold(request->recommended() ? 8 : request->threshold());
    r.set_smoothing(request->smoothing().empty() ? "none" : request->smoothing());
    r.add_files("provenance.json");
    op.mutable_response()->PackFrom(r);
    *response = op;
    AddOperation({op}, request->job_id());
    return grpc::Status::OK;
  }

  std::vector<v1::ExportRequest> exports() {
    absl::MutexLock lock(&mu_);
    return exports_;
  }

  // Newest first, filter "" or "job=<id>", pages of page_size (numeric tokens).
  grpc::Status ListOperations(grpc::ServerContext* context,
                              const v1::ListOperationsRequest* request,
                              v1::ListOperationsResponse* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    std::string job;
    if (!request->filter().empty()) {
      if (request->filter().rfind("job=", 0) != 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad filter");
      }
      job = request->filter().substr(4);
    }
    absl::MutexLock lock(&mu_);
    std::vector<const v1::Operation*> matching;
    for (auto it = operation_order_.rbegin(); it != operation_order_.rend(); ++it) {
      if (job.empty() || operation_job_[*it] == job) {
        matching.push_back(&operations_[*it].front());
      }
    }
    size_t start = 0;
    if (!request->page_token().empty() &&
        !absl::SimpleAtoi(request->page_token(), &start)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
    }
    const size_t size = request->page_size() > 0 ? request->page_size() : 100;
    for (size_t i = start; i < matching.size() && i < start + size; ++i) {
      *response->add_operations() = *matching[i];
    }
    if (start + size < matching.size()) {
      response->set_next_page_token(absl::StrCat(start + size));
    }
    return grpc::Status::OK;
  }

  grpc::Status CancelOperation(grpc::ServerContext* context,
                               const v1::CancelOperationRequest* request,
                               google::protobuf::Empty* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    cancelled_operations_.push_back(request->name());
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
  std::vector<std::string> operation_order_;
  std::map<std::string, std::string> operation_job_;
  v1::EvaluateRequest last_evaluate_;
  std::vector<v1::ExportRequest> exports_;
  std::vector<std::string> cancelled_operations_;
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
