// The `qcal` commands end to end against an in-process fake CalibrationService.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "client/test_util/fake_calibration_server.h"
#include "common/stats/outputs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

using testing::FakeCalibrationService;
using testing::FakeServer;
using testing::JobHistory;

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<FakeServer>(&service_);
    ASSERT_TRUE(server_->ok());
    dir_ = ::testing::TempDir() + "/cli_fake_server_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  Result Run(std::vector<std::string> args, bool tty = false) {
    std::vector<std::string> full = {"qcal", "--server", server_->address()};
    full.insert(full.end(), args.begin(), args.end());
    std::ostringstream out, err;
    CliIo io{&out, &err, tty};
    const int code = RunCli(full, io);
    return {code, out.str(), err.str()};
  }

  // stderr holds exactly one line starting with `prefix`.
  static void ExpectOneErrorLine(const Result& r, const std::string& prefix) {
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.back(), '\n');
    EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  }

  FakeCalibrationService service_;
  std::unique_ptr<FakeServer> server_;
  std::string dir_;
};

TEST_F(CliTest, SubmitPrintsTheJobIdAndSendsEveryFlag) {
  Result r = Run({"submit", "--model", "models/tiny", "--corpus", "c.jsonl",
                  "--num-samples", "64", "--seq-len", "256", "--mode", "packed",
                  "--order", "shuffled", "--seed", "7", "--skip-docs", "3",
                  "--skip-bad-lines", "--shard-size", "8", "--report-interval", "20",
                  "--batch-size", "4", "--name", "nightly", "--request-id", "req-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job-000001-test\n");
  EXPECT_EQ(r.err, "");
  const v1::SubmitJobRequest req = service_.last_submit();
  EXPECT_EQ(req.request_id(), "req-1");
  const v1::JobSpec& spec = req.spec();
  EXPECT_EQ(spec.model(), "models/tiny");
  EXPECT_EQ(spec.corpus(), "c.jsonl");
  EXPECT_EQ(spec.sampling().num_samples(), 64);
  EXPECT_EQ(spec.sampling().seq_len(), 256);
  EXPECT_EQ(spec.sampling().mode(), "packed");
  EXPECT_EQ(spec.sampling().order(), "shuffled");
  EXPECT_EQ(spec.sampling().seed(), 7u);
  EXPECT_EQ(spec.sampling().skip_docs(), 3);
  EXPECT_TRUE(spec.sampling().skip_bad_lines());
  EXPECT_EQ(spec.shard_size(), 8);
  EXPECT_EQ(spec.report_interval_seconds(), 20);
  EXPECT_EQ(spec.batch_size(), 4);
  EXPECT_EQ(spec.display_name(), "nightly");
}

TEST_F(CliTest, SubmitLeavesUnsetFlagsToTheServer) {
  Result r = Run({"submit", "--model", "m", "--corpus", "c"});
  ASSERT_EQ(r.code, 0) << r.err;
  const v1::JobSpec spec = service_.last_submit().spec();
  // Unset optional fields serialize to nothing: the server applies its defaults.
  EXPECT_EQ(spec.sampling().ByteSizeLong(), 0u) << spec.sampling().DebugString();
  EXPECT_EQ(spec.shard_size(), 0);
  EXPECT_EQ(spec.batch_size(), 0);
}

TEST_F(CliTest, SubmitJsonPrintsTheJob) {
  Result r = Run({"--json", "submit", "--model", "m", "--corpus", "c"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["id"], "job-000001-test");
  EXPECT_EQ(j["state"], "JOB_PENDING");
  EXPECT_EQ(j["spec"]["model"], "m");
}

TEST_F(CliTest, SubmitWaitFollowsTheJobToCalibrated) {
  Result r = Run({"submit", "--model", "m", "--corpus", "c", "--wait"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> lines = Lines(r.out);
  // "submitted", PENDING, RUNNING x3, CALIBRATED, then the final line.
  ASSERT_EQ(lines.size(), 7u) << r.out;
  EXPECT_EQ(lines[0], "submitted job-000001-test");
  EXPECT_EQ(lines[1].rfind("job-000001-test PENDING shards 0/4", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("job-000001-test RUNNING shards 3/4 samples 12/16", 0), 0u);
  EXPECT_EQ(lines[6],
            "job-000001-test CALIBRATED: 16 samples, 2048 tokens in 40s (51 tok/s)");
  EXPECT_EQ(r.out.find('\r'), std::string::npos);
}

TEST_F(CliTest, SubmitWaitOnATerminalRedrawsOneLine) {
  Result r = Run({"submit", "--model", "m", "--corpus", "c", "--wait"}, /*tty=*/true);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\rjob-000001-test RUNNING [######"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("] 4/4 shards  16/16 samples"), std::string::npos) << r.out;
  // "submitted", the redrawn bar, the final line.
  EXPECT_EQ(Lines(r.out).size(), 3u) << r.out;
}

TEST_F(CliTest, WaitOnAFailedJobExits3WithOneLine) {
  service_.submitted_final_state = v1::JOB_FAILED;
  Result r = Run({"submit", "--model", "m", "--corpus", "c", "--wait"});
  EXPECT_EQ(r.code, 3);
  ExpectOneErrorLine(r, "qcal: submit: JOB_FAILED: job job-000001-test failed: shard 3 "
                        "failed 3 times: out of memory");
  EXPECT_NE(r.out.find("job-000001-test FAILED after 30s: shard 3 failed 3 times: out of "
                       "memory"),
            std::string::npos)
      << r.out;
}

TEST_F(CliTest, WatchOfACancelledJobExits3) {
  service_.AddJob(JobHistory("job-c", 3, v1::JOB_CANCELLED));
  Result r = Run({"watch", "job-c"});
  EXPECT_EQ(r.code, 3);
  ExpectOneErrorLine(r, "qcal: watch: JOB_CANCELLED: job job-c was cancelled");
}

TEST_F(CliTest, WatchJsonPrintsOneObjectPerVersion) {
  service_.AddJob(JobHistory("job-w", 3, v1::JOB_CALIBRATED));
  Result r = Run({"watch", "job-w", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["id"], "job-w");
  }
  EXPECT_EQ(nlohmann::json::parse(lines.back())["state"], "JOB_CALIBRATED");
  EXPECT_EQ(nlohmann::json::parse(lines.back())["progress"]["shards_done"], "3");
}

TEST_F(CliTest, StatusOfAnUnknownJobExits4WithOneLine) {
  Result r = Run({"status", "job-nope"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.out, "");
  ExpectOneErrorLine(r, "qcal: status: NOT_FOUND: job job-nope not found");
  EXPECT_EQ(Run({"watch", "job-nope"}).code, 4);
  EXPECT_EQ(Run({"cancel", "job-nope"}).code, 4);
  EXPECT_EQ(Run({"stats", "job-nope", "--format", "mllm", "--out", dir_ + "/x.json"}).code,
            4);
}

TEST_F(CliTest, StatusShowsTheJob) {
  service_.AddJob(JobHistory("job-s", 4, v1::JOB_CALIBRATED));
  Result r = Run({"status", "job-s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("state:      CALIBRATED\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shards:     4/4 done"), std::string::npos) << r.out;
  Result j = Run({"status", "job-s", "--json"});
  ASSERT_EQ(j.code, 0);
  auto parsed = nlohmann::json::parse(j.out);
  EXPECT_EQ(parsed["state"], "JOB_CALIBRATED");
  EXPECT_EQ(parsed["create_time"], "2023-11-14T22:13:20Z");
}

TEST_F(CliTest, Unauthenticated) {
  service_.required_token = "s3cret";
  service_.AddJob(JobHistory("job-a", 2, v1::JOB_CALIBRATED));
  Result none = Run({"status", "job-a"});
  EXPECT_EQ(none.code, 7);
  ExpectOneErrorLine(none, "qcal: status: UNAUTHENTICATED: missing bearer token");

  const std::string wrong = dir_ + "/wrong.token", right = dir_ + "/right.token";
  std::ofstream(wrong) << "nope\n";
  std::ofstream(right) << "  s3cret\n";
  Result bad = Run({"--token-file", wrong, "status", "job-a"});
  EXPECT_EQ(bad.code, 7);
  ExpectOneErrorLine(bad, "qcal: status: UNAUTHENTICATED: invalid bearer token");
  Result good = Run({"status", "job-a", "--token-file", right});
  EXPECT_EQ(good.code, 0) << good.err;

  Result missing = Run({"--token-file", dir_ + "/absent", "status", "job-a"});
  EXPECT_EQ(missing.code, 2);
  ExpectOneErrorLine(missing, "qcal: status: INVALID_ARGUMENT: --token-file ");
}

TEST_F(CliTest, TokenFromTheEnvironment) {
  service_.required_token = "envtoken";
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  const std::string path = dir_ + "/env.token";
  std::ofstream(path) << "envtoken";
  ::setenv("QCAL_TOKEN_FILE", path.c_str(), 1);
  Result r = Run({"status", "job-e"});
  ::unsetenv("QCAL_TOKEN_FILE");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CliTest, StatsWritesTheSameFilesAsTheLibrary) {
  const stats::StatsSet set = testing::MakeStatsSet();
  service_.AddJob(JobHistory("job-st", 2, v1::JOB_CALIBRATED));
  service_.SetStats("job-st", testing::ToChunks(set, "job-st", 2));

  const std::string mllm = dir_ + "/mllm.json", abs = dir_ + "/abs.json",
                    sq = dir_ + "/act_scales.safetensors", want_sq = dir_ + "/want.st";
  Result r = Run({"stats", "job-st", "--format", "mllm", "--out", mllm});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote " + mllm + " (mllm, 3 linears, 64 tokens, job JOB_CALIBRATED)\n");
  EXPECT_EQ(ReadFile(mllm), stats::MllmDistributionJson(set, stats::Mode::kMllm));
  auto parsed = nlohmann::ordered_json::parse(ReadFile(mllm));
  EXPECT_EQ(parsed["ori"].size(), 3u);
  EXPECT_TRUE(parsed["top_0_1"].contains("model.layers.0.mlp.down_proj"));

  ASSERT_EQ(Run({"stats", "job-st", "--format", "abs", "--out", abs}).code, 0);
  EXPECT_EQ(ReadFile(abs), stats::MllmDistributionJson(set, stats::Mode::kAbs));

  Result j = Run({"--json", "stats", "job-st", "--format", "smoothquant", "--out", sq});
  ASSERT_EQ(j.code, 0) << j.err;
  ASSERT_TRUE(stats::WriteSmoothQuantActScales(set, want_sq).ok());
  EXPECT_EQ(ReadFile(sq), ReadFile(want_sq));
  auto summary = nlohmann::json::parse(j.out);
  EXPECT_EQ(summary["linears"], 3);
  EXPECT_EQ(summary["format"], "smoothquant");
  // No temporary file is left behind.
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 4u);
}

TEST_F(CliTest, StatsOfAnUnfinishedJobNeedsPartial) {
  const stats::StatsSet set = testing::MakeStatsSet();
  std::vector<v1::Job> history = JobHistory("job-p", 4, v1::JOB_CALIBRATED);
  history.pop_back();  // still RUNNING
  service_.AddJob(history);
  service_.SetStats("job-p", testing::ToChunks(set, "job-p", 1));
  const std::string out = dir_ + "/p.json";
  Result refused = Run({"stats", "job-p", "--format", "mllm", "--out", out});
  EXPECT_EQ(refused.code, 5);
  ExpectOneErrorLine(refused, "qcal: stats: FAILED_PRECONDITION: job job-p is not calibrated");
  EXPECT_FALSE(std::filesystem::exists(out));
  Result partial = Run({"stats", "job-p", "--format", "mllm", "--out", out, "--partial"});
  EXPECT_EQ(partial.code, 0) << partial.err;
  EXPECT_EQ(ReadFile(out), stats::MllmDistributionJson(set, stats::Mode::kMllm));
}

TEST_F(CliTest, StatsRejectsCorruptChunks) {
  const stats::StatsSet set = testing::MakeStatsSet();
  std::vector<v1::JobStatsChunk> chunks = testing::ToChunks(set, "job-x", 3);
  chunks[0].mutable_linears(1)->mutable_input()->mutable_max()->RemoveLast();
  service_.AddJob(JobHistory("job-x", 2, v1::JOB_CALIBRATED));
  service_.SetStats("job-x", chunks);
  Result r = Run({"stats", "job-x", "--format", "mllm", "--out", dir_ + "/x.json"});
  EXPECT_EQ(r.code, 1);
  ExpectOneErrorLine(r, "qcal: stats: DATA_LOSS: statistics of job-x are corrupt: ");
  EXPECT_NE(r.err.find("model.layers.0.mlp.down_proj"), std::string::npos) << r.err;
}

TEST_F(CliTest, StatsChecksTheOutputFolderFirst) {
  Result r = Run({"stats", "job-x", "--format", "mllm", "--out", dir_ + "/no/such/x.json"});
  EXPECT_EQ(r.code, 2);
  ExpectOneErrorLine(r, "qcal: stats: INVALID_ARGUMENT: --out ");
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(CliTest, ListPagesThroughEverything) {
  for (int i = 0; i < 5; ++i) {
    service_.AddJob(JobHistory("job-" + std::to_string(i), 2,
                               i % 2 ? v1::JOB_FAILED : v1::JOB_CALIBRATED));
  }
  Result one = Run({"list", "--page-size", "2"});
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<std::string> lines = Lines(one.out);
  ASSERT_EQ(lines.size(), 4u) << one.out;  // header, 2 jobs, "more jobs" hint
  EXPECT_EQ(lines[0].rfind("ID     NAME  STATE       PROGRESS    MODEL        CREATED", 0),
            0u)
      << lines[0];
  EXPECT_EQ(lines[1].rfind("job-4  -     CALIBRATED  2/2 (100%)", 0), 0u) << lines[1];

  Result all = Run({"list", "--page-size", "2", "--all", "--json"});
  ASSERT_EQ(all.code, 0) << all.err;
  auto j = nlohmann::json::parse(all.out);
  ASSERT_EQ(j["jobs"].size(), 5u);
  EXPECT_EQ(j["jobs"][0]["id"], "job-4");
  EXPECT_EQ(j["next_page_token"], "");

  Result failed = Run({"list", "--state", "failed", "--json"});
  ASSERT_EQ(failed.code, 0) << failed.err;
  EXPECT_EQ(nlohmann::json::parse(failed.out)["jobs"].size(), 2u);
  EXPECT_EQ(Run({"list", "--state", "nonsense"}).code, 2);
}

TEST_F(CliTest, Cancel) {
  std::vector<v1::Job> history = JobHistory("job-r", 4, v1::JOB_CALIBRATED);
  history.pop_back();
  service_.AddJob(history);
  Result r = Run({"cancel", "job-r"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job-r CANCELLED\n");
  Result again = Run({"cancel", "job-r"});
  EXPECT_EQ(again.code, 5);
  ExpectOneErrorLine(again, "qcal: cancel: FAILED_PRECONDITION: job job-r has already ended");
}

TEST_F(CliTest, OperationWait) {
  v1::Operation running;
  running.set_name("operations/op1");
  v1::Operation done = running;
  done.set_done(true);
  done.mutable_response()->PackFrom(testing::MakeJob("job-o", v1::JOB_CALIBRATED, 1, 1));
  service_.AddOperation({running, running, done});

  Result get = Run({"operation", "op1"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, "operation: operations/op1\ndone:      no\n");

  Result wait = Run({"operation", "operations/op1", "--wait", "--json"});
  ASSERT_EQ(wait.code, 0) << wait.err;
  auto j = nlohmann::json::parse(wait.out);
  EXPECT_EQ(j["done"], true);
  EXPECT_EQ(j["response"]["@type"], "type.googleapis.com/qcal.v1.Job");
  EXPECT_EQ(j["response"]["id"], "job-o");

  EXPECT_EQ(Run({"operation", "op-missing"}).code, 4);
}

TEST_F(CliTest, OperationThatFailedExits3) {
  v1::Operation failed;
  failed.set_name("operations/bad");
  failed.set_done(true);
  failed.mutable_error()->set_code(static_cast<int>(grpc::StatusCode::INTERNAL));
  failed.mutable_error()->set_message("worker crashed");
  service_.AddOperation({failed});
  Result r = Run({"operation", "bad", "--wait"});
  EXPECT_EQ(r.code, 3);
  ExpectOneErrorLine(r, "qcal: operation: INTERNAL: operation operations/bad failed: "
                        "worker crashed");
  EXPECT_NE(r.out.find("error:     INTERNAL: worker crashed"), std::string::npos);
}

TEST_F(CliTest, UnreachableServerExits6) {
  const std::string address = server_->address();
  server_.reset();
  std::ostringstream out, err;
  CliIo io{&out, &err, false};
  const int code = RunCli({"qcal", "--server", address, "--timeout", "5", "status", "job-1"},
                          io);
  EXPECT_EQ(code, 6);
  EXPECT_EQ(err.str().rfind("qcal: status: UNAVAILABLE: cannot reach " + address, 0), 0u)
      << err.str();
  EXPECT_EQ(Lines(err.str()).size(), 1u);
}

TEST_F(CliTest, ServerFromTheEnvironment) {
  service_.AddJob(JobHistory("job-env", 2, v1::JOB_CALIBRATED));
  ::setenv("QCAL_SERVER", server_->address().c_str(), 1);
  std::ostringstream out, err;
  CliIo io{&out, &err, false};
  const int code = RunCli({"qcal", "status", "job-env"}, io);
  ::unsetenv("QCAL_SERVER");
  EXPECT_EQ(code, 0) << err.str();
}

}  // namespace
}  // namespace qcal::client
