// Threshold evaluation end to end over real gRPC with real worker processes on the
// bundled trained model (llama-small): the full default sweep with two workers equals
// the sweep with one worker exactly; the float baseline equals a direct evaluation by
// the engine; a worker killed and the coordinator restarted mid-evaluation change
// nothing; bad evaluation requests get clear statuses.
#include <cmath>
#include <cstdio>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "tests/e2e_util.h"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace qcal {
namespace {

using namespace e2e;

constexpr int kEvalSamples = 24;
constexpr int kSeqLen = 64;

v1::EvaluateRequest EvalRequest(const std::string& job) {
  v1::EvaluateRequest r;
  r.set_job_id(job);
  r.set_eval_corpus(kEvalCorpus);
  r.mutable_eval_sampling()->set_num_samples(kEvalSamples);
  r.mutable_eval_sampling()->set_seq_len(kSeqLen);
  r.set_shard_size(4);
  r.set_batch_size(4);
  return r;
}

grpc::Status StartEvaluation(TestCluster& c, const v1::EvaluateRequest& r, v1::Operation* op) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  return stub->Evaluate(&ctx, r, op);
}

v1::EvaluateResponse RunEvaluation(TestCluster& c, const v1::EvaluateRequest& r,
                                   const std::function<void(const std::string&)>& midway = {}) {
  v1::Operation op;
  grpc::Status s = StartEvaluation(c, r, &op);
  EXPECT_TRUE(s.ok()) << s.error_message();
  if (midway) midway(op.name());
  v1::Operation done = WaitOperation(c, op.name());
  EXPECT_TRUE(done.done());
  EXPECT_FALSE(done.has_error()) << done.error().message() << c.Logs();
  v1::EvaluateResponse resp;
  EXPECT_TRUE(done.response().UnpackTo(&resp));
  return resp;
}

void Print(const v1::EvaluateResponse& r) {
  std::printf("  float: res %.4f ppl %.3f (%lld samples)\n", r.float_res(), r.float_perplexity(),
              static_cast<long long>(r.samples()));
  for (const auto& t : r.thresholds()) {
    std::string set = "{";
    for (int i = 0; i < t.shadow_layers_size(); ++i) set += (i ? ", " : "") + std::to_string(t.shadow_layers(i));
    set += "}";
    std::printf("  t=%-9g res %.4f ppl %8.3f clip in %2d/out %2d shadow %s\n", t.threshold(), t.res(),
                t.perplexity(), t.clip_input_num(), t.clip_output_num(), set.c_str());
  }
  if (r.has_recommended_threshold()) std::printf("  recommended: %g\n", r.recommended_threshold());
  std::printf("  %s\n", r.recommendation_note().c_str());
}

// A cluster with a calibrated job on the bundled model.
struct Calibrated {
  explicit Calibrated(const std::string& name, int workers = 2) : cluster(TempDir(name)) {
    EXPECT_TRUE(cluster.StartCoordinator(kData)) << cluster.Logs();
    for (int i = 0; i < workers; ++i) cluster.AddWorker();
    job = Submit(cluster, Spec(32, kSeqLen, 8, 4));
    EXPECT_EQ(WaitFinal(cluster, job).state(), v1::JOB_CALIBRATED) << cluster.Logs();
  }
  TestCluster cluster;
  std::string job;
};

TEST(EvaluationE2eTest, FullSweepWithTwoWorkersEqualsOneWorkerAndTheEngine) {
  Calibrated c("sweep");
  const v1::EvaluateResponse two = RunEvaluation(c.cluster, EvalRequest(c.job));
  std::printf("two workers:\n");
  Print(two);
  ASSERT_EQ(two.thresholds_size(), 11);
  EXPECT_EQ(two.samples(), kEvalSamples);
  // The largest threshold clips everything, the smallest nothing.
  EXPECT_EQ(two.thresholds(10).shadow_layers_size(), 0);
  EXPECT_EQ(two.thresholds(0).shadow_layers_size(), 6);

  c.cluster.workers()[0]->Kill(SIGTERM);
  c.cluster.workers()[1]->Kill(SIGTERM);
  c.cluster.AddWorker();
  const v1::EvaluateResponse one = RunEvaluation(c.cluster, EvalRequest(c.job));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(one, two))
      << one.ShortDebugString() << "\nvs\n" << two.ShortDebugString();

  // The float baseline equals a direct evaluation by the engine.
  text::SamplingOptions o;
  o.num_samples = kEvalSamples;
  o.seq_len = kSeqLen;
  auto sampler = text::OpenCorpusSampler(kData + "/" + kModel, kData + "/" + kEvalCorpus, o);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  auto ids = sampler->sampler->Samples(0, kEvalSamples);
  ASSERT_TRUE(ids.ok());
  EngineOptions eo;
  eo.threads = 1;
  auto engine = CalibrationEngine::Load(kData + "/" + kModel, eo);
  ASSERT_TRUE(engine.ok());
  quant::EvalMetrics m;
  ASSERT_TRUE((*engine)->Evaluate(*ids, EvalVariant::Float(), &m).ok());
  EXPECT_EQ(two.float_res(), m.accuracy());
  EXPECT_NEAR(two.float_perplexity(), m.perplexity(), 1e-12 * m.perplexity());
  std::printf("engine float baseline: res %.4f ppl %.3f\n", m.accuracy(), m.perplexity());
}

TEST(EvaluationE2eTest, KilledWorkerAndRestartedCoordinatorChangeNothing) {
  Calibrated c("faults");
  const v1::EvaluateResponse clean = RunEvaluation(c.cluster, EvalRequest(c.job));
  const v1::EvaluateResponse faulty = RunEvaluation(c.cluster, EvalRequest(c.job), [&](const std::string& name) {
    auto stub = v1::Operations::NewStub(c.cluster.Channel());
    // Wait until some units are done, then kill -9 a worker and the coordinator.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < until) {
      grpc::ClientContext ctx;
      v1::GetOperationRequest r;
      r.set_name(name);
      v1::Operation op;
      v1::EvaluateMetadata meta;
      if (stub->GetOperation(&ctx, r, &op).ok() && op.metadata().UnpackTo(&meta) &&
          meta.units_done() >= 3) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    c.cluster.workers()[0]->Kill(SIGKILL);
    ASSERT_TRUE(c.cluster.coordinator().Kill(SIGKILL));
    ASSERT_TRUE(c.cluster.StartCoordinator(kData)) << c.cluster.Logs();
    c.cluster.AddWorker();
  });
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(clean, faulty))
      << clean.ShortDebugString() << "\nvs\n" << faulty.ShortDebugString();
}

TEST(EvaluationE2eTest, BadRequestsGetClearStatuses) {
  TestCluster c(TempDir("eval-bad"));
  ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
  const std::string pending = Submit(c, Spec(8, 32, 4, 4));  // no worker: never calibrated
  v1::Operation op;
  auto r = EvalRequest(pending);
  grpc::Status s = StartEvaluation(c, r, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  r.set_job_id("job-missing");
  EXPECT_EQ(StartEvaluation(c, r, &op).error_code(), grpc::StatusCode::NOT_FOUND);
  r = EvalRequest(pending);
  r.add_thresholds(8);
  r.add_thresholds(4);
  s = StartEvaluation(c, r, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("ascending"), std::string::npos) << s.error_message();
  r.clear_thresholds();
  r.add_thresholds(-1);
  EXPECT_EQ(StartEvaluation(c, r, &op).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r.clear_thresholds();
  r.set_mode("median");
  s = StartEvaluation(c, r, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("median"), std::string::npos);
  EXPECT_TRUE(c.coordinator().running());
}

}  // namespace
}  // namespace qcal
