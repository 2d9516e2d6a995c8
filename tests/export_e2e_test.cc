// Export end to end over real gRPC with real worker processes on the bundled model:
// a worker killed (SIGKILL) in the middle of an export leaves no finished-looking
// folder and the retry by another worker writes it; every format runs as an
// operation and lists exactly the files it wrote; bad requests get clear statuses and
// the coordinator keeps serving.
#include <csignal>
#include <filesystem>
#include <set>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/export.pb.h"
#include "tests/e2e_util.h"

namespace qcal {
namespace {

using namespace e2e;
namespace fs = std::filesystem;

grpc::Status StartExport(TestCluster& c, const v1::ExportRequest& r, v1::Operation* op) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  return stub->Export(&ctx, r, op);
}

v1::ExportRequest Request(const std::string& job, const std::string& format,
                          const std::string& out) {
  v1::ExportRequest r;
  r.set_job_id(job);
  r.set_threshold(8);
  r.set_format(format);
  r.set_output(out);
  return r;
}

std::set<std::string> FilesUnder(const fs::path& dir) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.insert(fs::relative(e.path(), dir).string());
  }
  return files;
}

bool HasPartial(const fs::path& root, const std::string& name) {
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path().filename().string().rfind(name + ".partial-", 0) == 0) return true;
  }
  return false;
}

v1::ExportResponse Finished(TestCluster& c, const std::string& op_name) {
  v1::Operation done = WaitOperation(c, op_name);
  EXPECT_TRUE(done.done());
  EXPECT_FALSE(done.has_error()) << done.error().message() << c.Logs();
  v1::ExportResponse r;
  EXPECT_TRUE(done.response().UnpackTo(&r));
  return r;
}

class ExportE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("export");
    out_ = dir_ + "-out";
    fs::remove_all(out_);
    cluster_ = std::make_unique<TestCluster>(dir_, std::vector<std::string>{"--output-root", out_});
    ASSERT_TRUE(cluster_->StartCoordinator(kData)) << cluster_->Logs();
    out_ = fs::canonical(out_).string();
  }
  void TearDown() override {
    cluster_.reset();  // stops the processes
    if (!HasFailure()) {
      std::error_code ec;
      fs::remove_all(out_, ec);
      fs::remove_all(dir_, ec);
    }
  }
  void Calibrate() {
    cluster_->AddWorker();
    job_ = Submit(*cluster_, Spec(16, 64, 8, 4));
    ASSERT_EQ(WaitFinal(*cluster_, job_).state(), v1::JOB_CALIBRATED) << cluster_->Logs();
  }

  std::string dir_, out_, job_;
  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(ExportE2eTest, WorkerKilledMidExportLeavesNothingFinishedAndTheRetryWritesIt) {
  // The only worker pauses between the export's files and the final rename.
  cluster_->AddWorker({"--debug-export-pause-ms", "120000"});
  job_ = Submit(*cluster_, Spec(16, 64, 8, 4));
  ASSERT_EQ(WaitFinal(*cluster_, job_).state(), v1::JOB_CALIBRATED) << cluster_->Logs();

  v1::Operation op;
  ASSERT_TRUE(StartExport(*cluster_, Request(job_, "mllm", "mllm"), &op).ok());
  const fs::path final_dir = fs::path(out_) / "mllm";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!HasPartial(out_, "mllm") && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(HasPartial(out_, "mllm")) << cluster_->Logs();
  // Let the worker finish writing into the partial folder, then kill it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(cluster_->workers()[0]->Kill(SIGKILL));
  EXPECT_FALSE(fs::exists(final_dir)) << "a killed export must not look finished";
  {
    auto stub = v1::Operations::NewStub(cluster_->Channel());
    grpc::ClientContext ctx;
    v1::GetOperationRequest get;
    get.set_name(op.name());
    v1::Operation mid;
    ASSERT_TRUE(stub->GetOperation(&ctx, get, &mid).ok());
    EXPECT_FALSE(mid.done());
  }

  // Another worker takes the task once the lease expires and writes the export.
  cluster_->AddWorker();
  const v1::ExportResponse r = Finished(*cluster_, op.name());
  ASSERT_TRUE(fs::is_directory(final_dir));
  EXPECT_FALSE(HasPartial(out_, "mllm")) << "the retry removes the partial folder";
  EXPECT_EQ(r.output_dir(), final_dir.string());
  const std::set<std::string> listed(r.files().begin(), r.files().end());
  EXPECT_EQ(listed, FilesUnder(final_dir));
  EXPECT_TRUE(listed.count("model-int8.safetensors")) << r.ShortDebugString();
  EXPECT_TRUE(listed.count("provenance.json"));
  EXPECT_EQ(r.threshold(), 8);
  const auto prov = nlohmann::json::parse(testing::ReadAll(final_dir / "provenance.json"));
  EXPECT_EQ(prov["operation"], op.name());
  EXPECT_EQ(prov["job"]["id"], job_);
  EXPECT_EQ(prov["model_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(prov["corpus_sha256"].get<std::string>().size(), 64u);
}

TEST_F(ExportE2eTest, EveryFormatRunsAsAnOperationAndBadRequestsAreRefused) {
  Calibrate();
  struct Case {
    std::string format, smoothing, out, must_have;
    bool fuse;
  };
  const std::vector<Case> cases = {
      {"compressed-tensors", "none", "ct", "config.json", false},
      {"safetensors", "smoothquant:0.5", "sq", "model-int8.safetensors", true},
      {"safetensors", "logeq", "logeq", "model-int8.safetensors", false},
      {"stats", "none", "stats", "act_scales_distribution.json", false},
  };
  for (const Case& c : cases) {
    v1::ExportRequest r = Request(job_, c.format, c.out);
    r.set_smoothing(c.smoothing);
    r.set_fuse(c.fuse);
    v1::Operation op;
    grpc::Status s = StartExport(*cluster_, r, &op);
    ASSERT_TRUE(s.ok()) << c.format << ": " << s.error_message();
    const v1::ExportResponse resp = Finished(*cluster_, op.name());
    const fs::path dir = fs::path(out_) / c.out;
    const std::set<std::string> listed(resp.files().begin(), resp.files().end());
    EXPECT_EQ(listed, FilesUnder(dir)) << c.format;
    EXPECT_TRUE(listed.count(c.must_have)) << c.format << ": " << resp.ShortDebugString();
    EXPECT_TRUE(listed.count("provenance.json")) << c.format;
    if (c.smoothing != "none") {
      EXPECT_GT(resp.smoothed_groups(), 0) << c.format;
    }
  }
  const auto config = nlohmann::json::parse(testing::ReadAll(fs::path(out_) / "ct/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");

  auto refused = [&](v1::ExportRequest r, grpc::StatusCode code, const std::string& words) {
    v1::Operation op;
    grpc::Status s = StartExport(*cluster_, r, &op);
    EXPECT_EQ(s.error_code(), code) << words << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(words), std::string::npos) << s.error_message();
  };
  refused(Request("job-000099-none", "mllm", "x"), grpc::StatusCode::NOT_FOUND, "job-000099-none");
  refused(Request(job_, "mllm", "/etc/x"), grpc::StatusCode::PERMISSION_DENIED, "output");
  refused(Request(job_, "mllm", "../x"), grpc::StatusCode::INVALID_ARGUMENT, "..");
  refused(Request(job_, "mllm", "ct"), grpc::StatusCode::ALREADY_EXISTS, "ct");
  refused(Request(job_, "gguf", "g"), grpc::StatusCode::INVALID_ARGUMENT, "gguf");
  v1::ExportRequest rec = Request(job_, "mllm", "rec");
  rec.set_recommended(true);
  refused(rec, grpc::StatusCode::FAILED_PRECONDITION, "evaluation");
  // Still serving.
  EXPECT_EQ(WaitFinal(*cluster_, job_).state(), v1::JOB_CALIBRATED);
}

}  // namespace
}  // namespace qcal
