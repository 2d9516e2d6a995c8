// The `qcal` commands end to end against an in-process fake CalibrationService.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "client/evaluation.h"
#include "client/test_util/fake_calibration_server.h"
#include "common/stats/outputs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

using testing::EvaluationVersions;
using testing::FakeCalibrationService;
using testing::FakeServer;
using testing::JobHistory;
using testing::MakeEvaluateResponse;

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

  // A CALIBRATED llama job whose model folder (as the coordinator resolved it) is
  // `resolved_model`, with the statistics of MakeOutlierStatsSet.
  void AddCalibratedJob(const std::string& id, const std::string& resolved_model = "") {
    std::vector<v1::Job> history = JobHistory(id, 2, v1::JOB_CALIBRATED);
    for (v1::Job& job : history) {
      job.set_architecture("llama");
      job.set_resolved_model(resolved_model);
    }
    service_.AddJob(history);
    service_.SetStats(id, testing::ToChunks(testing::MakeOutlierStatsSet(), id, 3));
  }
  // A finished evaluation of `job_id` (newer than those added before).
  void AddEvaluation(const std::string& name, const std::string& job_id,
                     const v1::EvaluateResponse& response, const std::string& error = "") {
    service_.AddOperation({EvaluationVersions(name, job_id, response, error).back()},
                          job_id);
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

TEST_F(CliTest, EvaluateSendsEveryFlagAndPrintsTheOperation) {
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  Result r = Run({"evaluate", "job-e", "--eval-corpus", "eval.jsonl", "--thresholds", "4,1",
                  "--thresholds", "2", "--thresholds", " 4", "--mode", "mllm", "--budget",
                  "0.02", "--budget-metric", "ppl", "--num-samples", "64", "--seq-len",
                  "128", "--sampling-mode", "packed", "--order", "sequential", "--seed",
                  "9", "--skip-docs", "2", "--skip-bad-lines", "--shard-size", "8",
                  "--batch-size", "4"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "operations/eval-1-test\n");
  EXPECT_EQ(r.err, "");
  const v1::EvaluateRequest req = service_.last_evaluate();
  EXPECT_EQ(req.job_id(), "job-e");
  EXPECT_EQ(req.eval_corpus(), "eval.jsonl");
  // Ascending and distinct, as the API wants them.
  EXPECT_EQ(std::vector<double>(req.thresholds().begin(), req.thresholds().end()),
            (std::vector<double>{1, 2, 4}));
  EXPECT_EQ(req.mode(), "mllm");
  ASSERT_TRUE(req.has_budget());
  EXPECT_EQ(req.budget(), 0.02);
  EXPECT_EQ(req.budget_metric(), "ppl");
  const v1::SamplingOptions& s = req.eval_sampling();
  EXPECT_EQ(s.num_samples(), 64);
  EXPECT_EQ(s.seq_len(), 128);
  EXPECT_EQ(s.mode(), "packed");
  EXPECT_EQ(s.order(), "sequential");
  EXPECT_EQ(s.seed(), 9u);
  EXPECT_EQ(s.skip_docs(), 2);
  EXPECT_TRUE(s.skip_bad_lines());
  EXPECT_EQ(req.shard_size(), 8);
  EXPECT_EQ(req.batch_size(), 4);

  // Flags left out are not sent: the coordinator's defaults apply.
  ASSERT_EQ(Run({"evaluate", "job-e", "--eval-corpus", "eval.jsonl"}).code, 0);
  const v1::EvaluateRequest bare = service_.last_evaluate();
  EXPECT_TRUE(bare.thresholds().empty());
  EXPECT_FALSE(bare.has_budget());
  EXPECT_EQ(bare.mode(), "");
  EXPECT_EQ(bare.eval_sampling().ByteSizeLong(), 0u);

  Result j = Run({"--json", "evaluate", "job-e", "--eval-corpus", "eval.jsonl"});
  ASSERT_EQ(j.code, 0) << j.err;
  auto op = nlohmann::json::parse(j.out);
  EXPECT_EQ(op["name"], "operations/eval-3-test");
  EXPECT_EQ(op["done"], false);
  EXPECT_EQ(op["metadata"]["@type"], "type.googleapis.com/qcal.v1.EvaluateMetadata");
  EXPECT_EQ(op["metadata"]["units_total"], "10");
}

TEST_F(CliTest, EvaluateWaitShowsProgressThenTheResults) {
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  Result r = Run({"evaluate", "job-e", "--eval-corpus", "eval.jsonl", "--wait"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string table = FormatEvaluationTable(MakeEvaluateResponse("job-e"));
  ASSERT_GT(r.out.size(), table.size());
  EXPECT_EQ(r.out.substr(r.out.size() - table.size()), table) << r.out;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5 + Lines(table).size()) << r.out;
  EXPECT_EQ(lines[0], "started operations/eval-1-test");
  EXPECT_EQ(lines[1].rfind("operations/eval-1-test RUNNING units 0/10 elapsed ", 0), 0u);
  EXPECT_EQ(lines[2].rfind("operations/eval-1-test RUNNING units 4/10 elapsed ", 0), 0u);
  EXPECT_EQ(lines[3].rfind("operations/eval-1-test DONE units 10/10 elapsed ", 0), 0u);
  EXPECT_EQ(lines[4].rfind("operations/eval-1-test DONE: 10/10 units in ", 0), 0u);
  EXPECT_EQ(lines[5], "evaluation of job-e (mode abs, 128 samples)");
  EXPECT_EQ(lines[9].rfind("*  8          0.6250  12.500", 0), 0u) << lines[9];
  EXPECT_EQ(r.out.find('\r'), std::string::npos);
}

TEST_F(CliTest, EvaluateWaitOnATerminalRedrawsOneLine) {
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  Result r = Run({"evaluate", "job-e", "--eval-corpus", "e", "--wait"}, /*tty=*/true);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\roperations/eval-1-test RUNNING [#########..............."
                       "] 4/10 units"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\roperations/eval-1-test DONE [########################] 10/10 "
                       "units"),
            std::string::npos)
      << r.out;
  // "started", the redrawn bar, the final line, then the table.
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[2].rfind("operations/eval-1-test DONE: 10/10 units in ", 0), 0u);
  EXPECT_EQ(lines[3], "evaluation of job-e (mode abs, 128 samples)");
}

TEST_F(CliTest, EvaluateWaitJsonPrintsTheResponse) {
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  Result r = Run({"evaluate", "job-e", "--eval-corpus", "e", "--wait", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["job_id"], "job-e");
  EXPECT_EQ(j["recommended_threshold"], 8);
  EXPECT_EQ(j["float_res"], 0.6328125);
  ASSERT_EQ(j["thresholds"].size(), 4u);
  EXPECT_EQ(j["thresholds"][1]["shadow_layers"], nlohmann::json::array({1, 2, 26}));
  EXPECT_EQ(j["thresholds"][1]["no_clip_output_name"][0], "model.layers.2.mlp.down_proj");
}

TEST_F(CliTest, EvaluateThatEndsWithAnErrorExits3) {
  service_.AddJob(JobHistory("job-e", 2, v1::JOB_CALIBRATED));
  service_.evaluate_error = "worker crashed";
  Result r = Run({"evaluate", "job-e", "--eval-corpus", "e", "--wait"});
  EXPECT_EQ(r.code, 3);
  ExpectOneErrorLine(r, "qcal: evaluate: INTERNAL: operation operations/eval-1-test "
                        "failed: worker crashed");
  EXPECT_NE(r.out.find("operations/eval-1-test FAILED after "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("evaluation of"), std::string::npos) << r.out;
}

TEST_F(CliTest, EvaluateRefusals) {
  std::vector<v1::Job> running = JobHistory("job-r", 3, v1::JOB_CALIBRATED);
  running.pop_back();
  service_.AddJob(running);
  Result unknown = Run({"evaluate", "job-nope", "--eval-corpus", "e"});
  EXPECT_EQ(unknown.code, 4);
  ExpectOneErrorLine(unknown, "qcal: evaluate: NOT_FOUND: job job-nope not found");
  Result uncalibrated = Run({"evaluate", "job-r", "--eval-corpus", "e", "--wait"});
  EXPECT_EQ(uncalibrated.code, 5);
  ExpectOneErrorLine(uncalibrated, "qcal: evaluate: FAILED_PRECONDITION: job job-r is not "
                                   "calibrated");
  const int calls = service_.calls();
  for (const char* bad : {"0", "-1", "x", "1,,2", "inf", "nan"}) {
    Result r = Run({"evaluate", "job-r", "--eval-corpus", "e", "--thresholds", bad});
    EXPECT_EQ(r.code, 2) << bad;
    ExpectOneErrorLine(r, "qcal: evaluate: INVALID_ARGUMENT: --thresholds: ");
  }
  EXPECT_EQ(service_.calls(), calls);  // refused before any call
}

TEST_F(CliTest, ExportSendsEveryFlagAndWaitPrintsWhatWasWritten) {
  service_.AddJob(JobHistory("job-x", 2, v1::JOB_CALIBRATED));
  Result r = Run({"export", "job-x", "--threshold", "8", "--format", "safetensors",
                  "--smoothing", "smoothquant:0.75", "--fuse", "--per-channel", "--mode", "mllm",
                  "--out", "llama-int8"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "operations/export-1-test\n");
  ASSERT_EQ(service_.exports().size(), 1u);
  const v1::ExportRequest req = service_.exports()[0];
  EXPECT_EQ(req.job_id(), "job-x");
  EXPECT_EQ(req.threshold_choice_case(), v1::ExportRequest::kThreshold);
  EXPECT_EQ(req.threshold(), 8);
  EXPECT_EQ(req.format(), "safetensors");
  EXPECT_EQ(req.smoothing(), "smoothquant:0.75");
  EXPECT_TRUE(req.fuse());
  EXPECT_TRUE(req.per_channel_weights());
  EXPECT_EQ(req.mode(), "mllm");
  EXPECT_EQ(req.output(), "llama-int8");

  Result w = Run({"export", "job-x", "--threshold", "recommended", "--out", "mllm", "--wait"});
  ASSERT_EQ(w.code, 0) << w.err;
  EXPECT_TRUE(service_.exports()[1].recommended());
  EXPECT_EQ(service_.exports()[1].format(), "");  // the server's default (mllm)
  const std::vector<std::string> lines = Lines(w.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(),
            "exported mllm of job-x at threshold 8 (smoothing none, shadow layers {}, 0 int8 "
            "linears, 1 files, 0 bytes) to mllm")
      << w.out;

  Result j = Run({"--json", "export", "job-x", "--threshold", "2", "--format", "mllm", "--out",
                  "m2", "--wait"});
  ASSERT_EQ(j.code, 0) << j.err;
  auto resp = nlohmann::json::parse(j.out);
  EXPECT_EQ(resp["output_dir"], "m2");
  EXPECT_EQ(resp["files"], nlohmann::json::array({"provenance.json"}));
}

TEST_F(CliTest, ExportRefusals) {
  service_.AddJob(JobHistory("job-x", 2, v1::JOB_CALIBRATED));
  const int calls = service_.calls();
  for (const char* bad : {"0", "-3", "x", "inf", "recommend"}) {
    Result r = Run({"export", "job-x", "--threshold", bad, "--out", "o"});
    EXPECT_EQ(r.code, 2) << bad;
    ExpectOneErrorLine(r, "qcal: export: INVALID_ARGUMENT: --threshold: ");
  }
  EXPECT_EQ(service_.calls(), calls);  // refused before any call
  EXPECT_EQ(Run({"export", "job-x", "--threshold", "8"}).code, 2);  // --out is required
  EXPECT_EQ(Run({"export", "job-x", "--threshold", "8", "--format", "onnx", "--out", "o"}).code, 2);
  Result unknown = Run({"export", "job-nope", "--threshold", "8", "--out", "o"});
  EXPECT_EQ(unknown.code, 4);
  ExpectOneErrorLine(unknown, "qcal: export: NOT_FOUND: job job-nope not found");
}

TEST_F(CliTest, OperationShowsAnEvaluation) {
  service_.AddOperation(
      EvaluationVersions("operations/ev", "job-1", MakeEvaluateResponse("job-1")), "job-1");
  Result get = Run({"operation", "ev"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out,
            "operation: operations/ev\n"
            "done:      no\n"
            "metadata:  qcal.v1.EvaluateMetadata (job job-1, 0/10 units)\n");

  Result wait = Run({"operation", "ev", "--wait"});
  ASSERT_EQ(wait.code, 0) << wait.err;
  const std::string details =
      "operation: operations/ev\n"
      "done:      yes\n"
      "metadata:  qcal.v1.EvaluateMetadata (job job-1, 10/10 units)\n"
      "response:  qcal.v1.EvaluateResponse\n" +
      FormatEvaluationTable(MakeEvaluateResponse("job-1"));
  ASSERT_GT(wait.out.size(), details.size());
  EXPECT_EQ(wait.out.substr(wait.out.size() - details.size()), details) << wait.out;
  EXPECT_EQ(wait.out.rfind("operations/ev RUNNING units 0/10 elapsed ", 0), 0u) << wait.out;

  Result json = Run({"operation", "ev", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["metadata"]["@type"], "type.googleapis.com/qcal.v1.EvaluateMetadata");
  EXPECT_EQ(j["metadata"]["units_done"], "10");
  EXPECT_EQ(j["response"]["@type"], "type.googleapis.com/qcal.v1.EvaluateResponse");
  EXPECT_EQ(j["response"]["recommended_threshold"], 8);
  EXPECT_EQ(j["response"]["thresholds"][2]["shadow_layers"], nlohmann::json::array({26}));
}

TEST_F(CliTest, ShadowLayersOfTheNewestEvaluation) {
  AddCalibratedJob("job-s", dir_ + "/absent");
  v1::EvaluateResponse older = MakeEvaluateResponse("job-s");
  older.set_recommended_threshold(32);
  AddEvaluation("operations/ev-old", "job-s", older);
  AddEvaluation("operations/ev-new", "job-s", MakeEvaluateResponse("job-s"));
  // Newer but not usable: failed, still running, another job's.
  AddEvaluation("operations/ev-failed", "job-s", older, "worker crashed");
  service_.AddOperation({EvaluationVersions("operations/ev-running", "job-s", older)[1]},
                        "job-s");
  AddEvaluation("operations/ev-other", "job-other", older);

  const std::string recommended =
      "{1, 2, 26}\n"
      "threshold 8 (recommended), mode abs: 3 shadow layers (from evaluation "
      "operations/ev-new)\n"
      "not clipped input (2):\n"
      "  model.layers.1.mlp.down_proj\n"
      "  model.layers.26.mlp.down_proj\n"
      "not clipped output (1):\n"
      "  model.layers.2.mlp.down_proj\n";
  Result r = Run({"shadow-layers", "job-s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, recommended);
  EXPECT_EQ(Run({"shadow-layers", "job-s", "--recommended"}).out, recommended);

  // A threshold the evaluation has.
  Result t32 = Run({"shadow-layers", "job-s", "--threshold", "32"});
  ASSERT_EQ(t32.code, 0) << t32.err;
  EXPECT_EQ(t32.out,
            "{26}\n"
            "threshold 32, mode abs: 1 shadow layer (from evaluation operations/ev-new)\n"
            "not clipped input (1):\n"
            "  model.layers.26.mlp.down_proj\n"
            "not clipped output (0):\n"
            "  (none)\n");

  Result json = Run({"shadow-layers", "job-s", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  ASSERT_EQ(Lines(json.out).size(), 1u);
  auto j = nlohmann::ordered_json::parse(json.out);
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "job_id", "threshold", "mode", "recommended", "shadow_layers",
                      "shadow_layers_set", "no_clip_input_name", "no_clip_output_name",
                      "source", "layer_index_from"}));
  EXPECT_EQ(j["threshold"], 8);
  EXPECT_EQ(j["shadow_layers"], nlohmann::ordered_json::array({1, 2, 26}));
  EXPECT_EQ(j["shadow_layers_set"], "{1, 2, 26}");
  EXPECT_EQ(j["source"], "evaluation operations/ev-new");
}

TEST_F(CliTest, ShadowLayersDecidedFromTheStatistics) {
  AddCalibratedJob("job-s", dir_ + "/absent");
  AddEvaluation("operations/ev", "job-s", MakeEvaluateResponse("job-s"));
  // 10 is not in the evaluation: decided here (MakeOutlierStatsSet: {0, 1, 3}).
  Result r = Run({"shadow-layers", "job-s", "--threshold", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{0, 1, 3}\n"
            "threshold 10, mode abs: 3 shadow layers (computed here from the statistics of "
            "job-s; layer indices from module names: cannot read " +
                dir_ +
                "/absent/config.json)\n"
                "not clipped input (3):\n"
                "  model.layers.1.mlp.down_proj\n"
                "  model.layers.2.self_attn.q_proj\n"
                "  model.layers.3.mlp.down_proj\n"
                "not clipped output (1):\n"
                "  model.layers.0.mlp.down_proj\n");
  Result json = Run({"shadow-layers", "job-s", "--threshold", "3", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["threshold"], 3);
  EXPECT_EQ(j["mode"], "abs");
  EXPECT_EQ(j["recommended"], false);
  EXPECT_EQ(j["shadow_layers"], nlohmann::json::array({0, 1, 2, 3}));
  EXPECT_EQ(j["shadow_layers_set"], "{0, 1, 2, 3}");
  EXPECT_EQ(j["no_clip_input_name"].size(), 4u);
  EXPECT_EQ(j["no_clip_output_name"], nlohmann::json::array({"model.layers.0.mlp.down_proj"}));
  EXPECT_EQ(j["source"], "statistics");
  EXPECT_EQ(j["layer_index_from"], "module names");
  // A threshold the evaluation has, in a mode it did not use: decided here.
  Result mllm = Run({"shadow-layers", "job-s", "--threshold", "8", "--mode", "mllm"});
  ASSERT_EQ(mllm.code, 0) << mllm.err;
  EXPECT_EQ(Lines(mllm.out)[0], "{0, 1, 3}");
  EXPECT_EQ(Lines(mllm.out)[1].rfind("threshold 8, mode mllm: 3 shadow layers (computed "
                                     "here",
                                     0),
            0u)
      << mllm.out;

  // With the model's config.json readable here, the config maps the names.
  std::filesystem::create_directories(dir_ + "/model");
  std::ofstream(dir_ + "/model/config.json")
      << R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
             "intermediate_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2,
             "num_key_value_heads": 2, "max_position_embeddings": 64})";
  AddCalibratedJob("job-c", dir_ + "/model");
  Result config = Run({"shadow-layers", "job-c", "--threshold", "10", "--json"});
  ASSERT_EQ(config.code, 0) << config.err;
  auto c = nlohmann::json::parse(config.out);
  EXPECT_EQ(c["shadow_layers_set"], "{0, 1, 3}");
  EXPECT_EQ(c["layer_index_from"], "config");
}

TEST_F(CliTest, ShadowLayersRefusals) {
  AddCalibratedJob("job-n");
  Result none = Run({"shadow-layers", "job-n"});
  EXPECT_EQ(none.code, 5);
  ExpectOneErrorLine(none, "qcal: shadow-layers: FAILED_PRECONDITION: job job-n has no "
                           "finished evaluation");
  // Without an evaluation a threshold is still decided from the statistics.
  Result t = Run({"shadow-layers", "job-n", "--threshold", "200"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(Lines(t.out)[0], "{}");

  v1::EvaluateResponse nothing = MakeEvaluateResponse("job-n");
  nothing.clear_recommended_threshold();
  nothing.set_recommendation_note("no threshold is within budget");
  AddEvaluation("operations/ev", "job-n", nothing);
  Result norec = Run({"shadow-layers", "job-n", "--recommended"});
  EXPECT_EQ(norec.code, 5);
  ExpectOneErrorLine(norec, "qcal: shadow-layers: FAILED_PRECONDITION: evaluation "
                            "operations/ev of job job-n recommends no threshold (no "
                            "threshold is within budget)");

  EXPECT_EQ(Run({"shadow-layers", "job-nope"}).code, 4);
  EXPECT_EQ(Run({"shadow-layers", "job-n", "--threshold", "0"}).code, 2);
  EXPECT_EQ(Run({"shadow-layers", "job-n", "--threshold", "inf"}).code, 2);
  EXPECT_EQ(Run({"shadow-layers", "job-n", "--threshold", "2", "--recommended"}).code, 2);
  EXPECT_EQ(Run({"shadow-layers", "job-n", "--mode", "abs"}).code, 2);
}

TEST_F(CliTest, StatsWritesModelResAccOfTheNewestEvaluation) {
  service_.AddJob(JobHistory("job-m", 2, v1::JOB_CALIBRATED));
  const std::string out = dir_ + "/model_res_acc.json";
  Result none = Run({"stats", "job-m", "--format", "model-res-acc", "--out", out});
  EXPECT_EQ(none.code, 5);
  ExpectOneErrorLine(none, "qcal: stats: FAILED_PRECONDITION: job job-m has no finished "
                           "evaluation");
  EXPECT_FALSE(std::filesystem::exists(out));

  AddEvaluation("operations/ev", "job-m", MakeEvaluateResponse("job-m"));
  Result r = Run({"stats", "job-m", "--format", "model-res-acc", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "wrote " + out + " (model-res-acc, 4 thresholds, evaluation "
                   "operations/ev)\n");
  // mllm's layout, keyed by the job's model path.
  auto j = nlohmann::ordered_json::parse(ReadFile(out));
  ASSERT_EQ(j.size(), 1u);
  ASSERT_TRUE(j.contains("models/tiny")) << j.dump();
  const auto& by_threshold = j["models/tiny"];
  std::vector<std::string> keys;
  for (const auto& item : by_threshold.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"1", "8", "32", "10000000"}));
  const auto& t8 = by_threshold["8"];
  std::vector<std::string> fields;
  for (const auto& item : t8.items()) fields.push_back(item.key());
  EXPECT_EQ(fields, (std::vector<std::string>{
                        "t01m_thre", "clip_input_num", "no_clip_input_num",
                        "clip_output_num", "no_clip_output_num", "no_clip_input_name",
                        "no_clip_output_name", "res"}));
  EXPECT_EQ(t8["t01m_thre"], 8);
  EXPECT_EQ(t8["clip_input_num"], 3);
  EXPECT_EQ(t8["no_clip_input_num"], 2);
  EXPECT_EQ(t8["clip_output_num"], 4);
  EXPECT_EQ(t8["no_clip_output_num"], 1);
  EXPECT_EQ(t8["no_clip_input_name"],
            nlohmann::ordered_json::array({"model.layers.1.mlp.down_proj",
                                           "model.layers.26.mlp.down_proj"}));
  EXPECT_EQ(t8["res"], 0.625);
  EXPECT_EQ(by_threshold["32"]["res"], 0.6015625);
  EXPECT_EQ(by_threshold["10000000"]["t01m_thre"], 10000000);
  // json.dump(indent=4), as mllm writes it.
  EXPECT_EQ(ReadFile(out).rfind("{\n    \"models/tiny\": {\n        \"1\": {\n", 0), 0u);

  Result json = Run({"--json", "stats", "job-m", "--format", "model-res-acc", "--out", out});
  ASSERT_EQ(json.code, 0) << json.err;
  auto summary = nlohmann::json::parse(json.out);
  EXPECT_EQ(summary["operation"], "operations/ev");
  EXPECT_EQ(summary["thresholds"], 4);
  EXPECT_EQ(summary["model"], "models/tiny");
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
