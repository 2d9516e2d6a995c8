// Helpers shared by the end-to-end tests: job specs on the bundled model and corpus,
// submitting, waiting and fetching statistics over real gRPC.
#ifndef QCAL_TESTS_E2E_UTIL_H_
#define QCAL_TESTS_E2E_UTIL_H_

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "common/stats/stats_proto.h"
#include "gtest/gtest.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"
#include "proto/qcal/v1/operations.grpc.pb.h"
#include "tests/test_cluster.h"

namespace qcal::e2e {

namespace fs = std::filesystem;

using testing::TestCluster;
inline const std::string kData = QCAL_TEST_DATA_DIR;
inline const std::string kModel = "models/llama-small";
inline const std::string kCorpus = "corpus/calib.jsonl.zst";
inline const std::string kEvalCorpus = "corpus/eval.jsonl.zst";

inline std::string TempDir(const std::string& name) {
  return (fs::path(::testing::TempDir()) / ("qcal-e2e-" + std::to_string(getpid()) + "-" + name)).string();
}

inline v1::SubmitJobRequest Spec(int samples, int seq_len, int shard, int batch) {
  v1::SubmitJobRequest r;
  auto* s = r.mutable_spec();
  s->set_model(kModel);
  s->set_corpus(kCorpus);
  s->mutable_sampling()->set_num_samples(samples);
  s->mutable_sampling()->set_seq_len(seq_len);
  s->set_shard_size(shard);
  s->set_batch_size(batch);
  s->set_report_interval_seconds(1);
  return r;
}

inline v1::Job WaitFinal(TestCluster& c, const std::string& job_id, int timeout_s = 240) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  v1::Job last;
  while (std::chrono::steady_clock::now() < until) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetJobRequest r;
    r.set_job_id(job_id);
    if (stub->GetJob(&ctx, r, &last).ok() &&
        v1::IsFinalJobState(last.state())) {
      return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << job_id << " did not finish: " << last.DebugString() << c.Logs();
  return last;
}

// Polls until `pred(job)` holds.
inline bool WaitFor(TestCluster& c, const std::string& job_id, const std::function<bool(const v1::Job&)>& pred,
             int timeout_s = 120) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    grpc::ClientContext ctx;
    v1::GetJobRequest r;
    r.set_job_id(job_id);
    v1::Job j;
    if (stub->GetJob(&ctx, r, &j).ok() && pred(j)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

inline std::string Submit(TestCluster& c, const v1::SubmitJobRequest& r) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  v1::Job job;
  grpc::Status s = stub->SubmitJob(&ctx, r, &job);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return job.id();
}

inline stats::StatsSet FetchStats(TestCluster& c, const std::string& job_id) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  v1::GetJobStatsRequest r;
  r.set_job_id(job_id);
  auto reader = stub->GetJobStats(&ctx, r);
  v1::StatsSetProto all;
  v1::JobStatsChunk chunk;
  int64_t tokens = 0;
  while (reader->Read(&chunk)) {
    if (!chunk.job_id().empty()) tokens = chunk.tokens();
    for (auto& l : *chunk.mutable_linears()) *all.add_linears() = l;
  }
  grpc::Status s = reader->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  all.set_tokens(tokens);
  auto set = stats::StatsSetFromProto(all);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *set : stats::StatsSet();
}


// Polls an operation until it is done.
inline v1::Operation WaitOperation(TestCluster& c, const std::string& name, int timeout_s = 300) {
  auto stub = v1::Operations::NewStub(c.Channel());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  v1::Operation op;
  while (std::chrono::steady_clock::now() < until) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetOperationRequest r;
    r.set_name(name);
    if (stub->GetOperation(&ctx, r, &op).ok() && op.done()) return op;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "operation " << name << " did not finish: " << op.DebugString() << c.Logs();
  return op;
}

}  // namespace qcal::e2e

#endif  // QCAL_TESTS_E2E_UTIL_H_
