// `qcal run` end to end with a fake coordinator (test_util/fake_coordinator.cc, a
// real gRPC server in a child process) and shell-script workers.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/cli.h"
#include "client/evaluation.h"
#include "client/test_util/fake_calibration_server.h"
#include "common/stats/outputs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

namespace fs = std::filesystem;

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

class RunCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir() + "/run_command_test_" + std::to_string(::getpid()))
               .lexically_normal()
               .string();
    fs::remove_all(dir_);
    model_ = dir_ + "/models/tiny";
    corpus_ = dir_ + "/data/corpus.jsonl";
    fs::create_directories(model_);
    fs::create_directories(dir_ + "/data");
    std::ofstream(corpus_) << "{\"text\": \"hello\"}\n";
    worker_ = dir_ + "/worker.sh";
    std::ofstream(worker_) << "#!/bin/sh\necho \"worker $*\"\nexec sleep 100\n";
    ::chmod(worker_.c_str(), 0755);
    out_ = dir_ + "/out";
    db_ = dir_ + "/db";
  }
  void TearDown() override {
    ::unsetenv("FAKE_COORDINATOR_EVAL");
    ::unsetenv("FAKE_COORDINATOR_FINAL");
    ::unsetenv("FAKE_COORDINATOR_EXIT");
    fs::remove_all(dir_);
  }

  Result Run(std::vector<std::string> extra, bool json = false) {
    std::vector<std::string> args = {"qcal"};
    if (json) args.push_back("--json");
    args.insert(args.end(), {"run", "--model", model_, "--corpus", corpus_, "--out", out_,
                             "--coordinator-bin", QCAL_FAKE_COORDINATOR, "--worker-bin",
                             worker_});
    args.insert(args.end(), extra.begin(), extra.end());
    std::ostringstream out, err;
    CliIo io{&out, &err, false};
    const int code = RunCli(args, io);
    return {code, out.str(), err.str()};
  }

  std::string dir_, model_, corpus_, worker_, out_, db_;
};

TEST_F(RunCommandTest, CalibratesAndWritesTheThreeFiles) {
  Result r = Run({"--db", db_, "--workers", "3", "--threads", "2", "--num-samples", "16"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(r.err, "");
  const stats::StatsSet want = testing::MakeStatsSet();
  EXPECT_EQ(ReadFile(out_ + "/act_scales_distribution.json"),
            stats::MllmDistributionJson(want, stats::Mode::kMllm));
  EXPECT_EQ(ReadFile(out_ + "/act_scales_distribution_abs.json"),
            stats::MllmDistributionJson(want, stats::Mode::kAbs));
  ASSERT_TRUE(stats::WriteSmoothQuantActScales(want, dir_ + "/want.safetensors").ok());
  EXPECT_EQ(ReadFile(out_ + "/act_scales.safetensors"), ReadFile(dir_ + "/want.safetensors"));
  EXPECT_NE(r.out.find("results in " + out_ + ":\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("job-000001-test CALIBRATED: 16 samples"), std::string::npos) << r.out;

  // The coordinator got the documented flags and was stopped with SIGTERM.
  const std::string args = ReadFile(db_ + "/args.txt");
  EXPECT_EQ(args.rfind("--listen\n127.0.0.1:0\n--db\n" + db_ + "\n--data-root\n" + dir_ +
                           "/models\n--data-root\n" + dir_ + "/data\n--output-root\n" + out_ +
                           "\n--port-file\n",
                       0),
            0u)
      << args;
  EXPECT_NE(args.find("--metrics-listen\n\n"), std::string::npos);
  EXPECT_EQ(ReadFile(db_ + "/terminated"), std::to_string(SIGTERM) + "\n");
  // Absolute paths inside the data roots, and the sampling flags.
  const std::string submit = ReadFile(db_ + "/submit.txt");
  EXPECT_NE(submit.find("model: \"" + model_ + "\""), std::string::npos) << submit;
  EXPECT_NE(submit.find("corpus: \"" + corpus_ + "\""), std::string::npos) << submit;
  EXPECT_NE(submit.find("num_samples: 16"), std::string::npos) << submit;
  // Every worker ran with its flags and logged.
  for (int i = 0; i < 3; ++i) {
    const std::string log = ReadFile(out_ + "/logs/worker-" + std::to_string(i) + ".log");
    EXPECT_NE(log.find("--name local-" + std::to_string(i) + " --threads 2"),
              std::string::npos)
        << log;
  }
  EXPECT_NE(ReadFile(out_ + "/logs/coordinator.log").find("stopped by signal 15"),
            std::string::npos);
}

TEST_F(RunCommandTest, EvalCorpusEvaluatesAndPrintsTheShadowLayers) {
  const std::string eval = dir_ + "/eval/eval.jsonl";
  fs::create_directories(dir_ + "/eval");
  std::ofstream(eval) << "{\"text\": \"bye\"}\n";
  Result r = Run({"--db", db_, "--eval-corpus", eval, "--eval-num-samples", "32",
                  "--eval-seq-len", "64"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(r.err, "");
  // The calibration's files, then the evaluation's.
  EXPECT_TRUE(fs::exists(out_ + "/act_scales_distribution.json"));
  const v1::EvaluateResponse want = testing::MakeEvaluateResponse("job-000001-test");
  auto res_acc = ModelResAccJsonOf(want, model_);
  ASSERT_TRUE(res_acc.ok());
  EXPECT_EQ(ReadFile(out_ + "/model_res_acc.json"), *res_acc);
  auto evaluation = nlohmann::json::parse(ReadFile(out_ + "/evaluation.json"));
  EXPECT_EQ(evaluation["recommended_threshold"], 8);
  EXPECT_EQ(evaluation["thresholds"].size(), 4u);

  EXPECT_NE(r.out.find("evaluating job-000001-test on " + eval +
                       ": operations/eval-1-test\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("operations/eval-1-test DONE: 10/10 units in "), std::string::npos);
  EXPECT_NE(r.out.find(FormatEvaluationTable(want)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  " + out_ + "/model_res_acc.json  (mllm model_res_acc)\n"),
            std::string::npos)
      << r.out;
  // The last two lines: the recommendation, then the report file.
  const std::string last = "recommended threshold 8, shadow layers {1, 2, 26}\nreport: " + out_ +
                           "/report.html  (open it in a browser)\n";
  ASSERT_GT(r.out.size(), last.size());
  EXPECT_EQ(r.out.substr(r.out.size() - last.size()), last) << r.out;
  EXPECT_NE(ReadFile(out_ + "/report.html").find("\"shadow_layers_set\":\"{1, 2, 26}\""),
            std::string::npos);

  // The eval corpus's folder is a data root too; the request has the sampling flags.
  const std::string args = ReadFile(db_ + "/args.txt");
  EXPECT_NE(args.find("--data-root\n" + dir_ + "/data\n--data-root\n" + dir_ + "/eval\n"),
            std::string::npos)
      << args;
  const std::string request = ReadFile(db_ + "/evaluate.txt");
  EXPECT_NE(request.find("job_id: \"job-000001-test\""), std::string::npos) << request;
  EXPECT_NE(request.find("eval_corpus: \"" + eval + "\""), std::string::npos) << request;
  EXPECT_NE(request.find("num_samples: 32"), std::string::npos) << request;
  EXPECT_NE(request.find("seq_len: 64"), std::string::npos) << request;
  EXPECT_EQ(request.find("thresholds"), std::string::npos) << request;  // the defaults

  // It ends with the mllm and compressed-tensors exports of the recommended threshold.
  EXPECT_EQ(ReadFile(db_ + "/exports.txt"),
            "job_id: \"job-000001-test\" recommended: true format: \"mllm\" output: "
            "\"export-mllm\"\n"
            "job_id: \"job-000001-test\" recommended: true format: \"compressed-tensors\" "
            "output: \"export-compressed-tensors\"\n");
  EXPECT_NE(r.out.find("  export-mllm/  (mllm export, 1 files)\n"), std::string::npos) << r.out;
}

TEST_F(RunCommandTest, EvalDefaultsAndJsonSummary) {
  const std::string eval = dir_ + "/data/eval.jsonl";  // same folder as the corpus
  std::ofstream(eval) << "{\"text\": \"bye\"}\n";
  Result r = Run({"--db", db_, "--eval-corpus", eval}, /*json=*/true);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  for (const std::string& line : lines) EXPECT_NO_THROW(nlohmann::json::parse(line)) << line;
  auto summary = nlohmann::json::parse(lines.back());
  EXPECT_EQ(summary["files"]["model_res_acc"], out_ + "/model_res_acc.json");
  EXPECT_EQ(summary["files"]["evaluation"], out_ + "/evaluation.json");
  EXPECT_EQ(summary["evaluation"]["operation"], "operations/eval-1-test");
  EXPECT_EQ(summary["evaluation"]["recommended_threshold"], 8);
  EXPECT_EQ(summary["evaluation"]["shadow_layers"], nlohmann::json::array({1, 2, 26}));
  EXPECT_EQ(summary["evaluation"]["shadow_layers_set"], "{1, 2, 26}");
  const std::string request = ReadFile(db_ + "/evaluate.txt");
  EXPECT_NE(request.find("num_samples: 128"), std::string::npos) << request;
  EXPECT_EQ(request.find("seq_len"), std::string::npos) << request;  // the job's
  // No extra data root for a corpus folder that is one already.
  const std::string args = ReadFile(db_ + "/args.txt");
  EXPECT_EQ(args.find("/data\n--data-root\n" + dir_ + "/data\n"), std::string::npos) << args;
}

TEST_F(RunCommandTest, FailedEvaluationExits3AfterWritingTheStatistics) {
  ::setenv("FAKE_COORDINATOR_EVAL", "failed", 1);
  const std::string eval = dir_ + "/data/eval.jsonl";
  std::ofstream(eval) << "{\"text\": \"bye\"}\n";
  Result r = Run({"--db", db_, "--eval-corpus", eval});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.err,
            "qcal: run: INTERNAL: operation operations/eval-1-test failed: worker crashed\n");
  EXPECT_TRUE(fs::exists(out_ + "/act_scales_distribution.json"));
  EXPECT_FALSE(fs::exists(out_ + "/model_res_acc.json"));
  EXPECT_TRUE(fs::exists(db_ + "/terminated"));
}

TEST_F(RunCommandTest, MissingEvalCorpusIsReportedBeforeStarting) {
  Result r = Run({"--db", db_, "--eval-corpus", dir_ + "/data/absent.jsonl"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "qcal: run: NOT_FOUND: --eval-corpus " + dir_ +
                       "/data/absent.jsonl is not a file\n");
  EXPECT_FALSE(fs::exists(db_));
}

TEST_F(RunCommandTest, JsonSummaryAndTemporaryDatabase) {
  Result r = Run({"--workers", "1"}, /*json=*/true);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u);
  for (const std::string& line : lines) EXPECT_NO_THROW(nlohmann::json::parse(line)) << line;
  auto summary = nlohmann::json::parse(lines.back());
  EXPECT_EQ(summary["state"], "JOB_CALIBRATED");
  EXPECT_EQ(summary["out"], out_);
  EXPECT_EQ(summary["files"]["smoothquant"], out_ + "/act_scales.safetensors");
  EXPECT_EQ(summary["linears"], 3);
  EXPECT_FALSE(summary.contains("db"));
  EXPECT_TRUE(fs::exists(out_ + "/act_scales_distribution.json"));
}

TEST_F(RunCommandTest, FailedJobExits3AndStopsEverything) {
  ::setenv("FAKE_COORDINATOR_FINAL", "failed", 1);
  Result r = Run({"--db", db_});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.err,
            "qcal: run: JOB_FAILED: job job-000001-test failed: shard 3 failed 3 times: "
            "out of memory\n");
  EXPECT_TRUE(fs::exists(db_ + "/terminated"));
  EXPECT_FALSE(fs::exists(out_ + "/act_scales_distribution.json"));
}

TEST_F(RunCommandTest, CoordinatorThatDiesIsReported) {
  ::setenv("FAKE_COORDINATOR_EXIT", "3", 1);
  Result r = Run({});
  EXPECT_EQ(r.code, 6);
  EXPECT_EQ(r.err.rfind("qcal: run: UNAVAILABLE: fake_coordinator (pid ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("exited with status 3 before serving: fake_coordinator: told to exit "
                       "(log: " + out_ + "/logs/coordinator.log)\n"),
            std::string::npos)
      << r.err;
}

TEST_F(RunCommandTest, MissingInputsAreReportedBeforeStarting) {
  model_ = dir_ + "/models/absent";
  Result r = Run({"--db", db_});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "qcal: run: NOT_FOUND: --model " + model_ + " is not a folder\n");
  EXPECT_FALSE(fs::exists(db_));
  model_ = dir_ + "/models/tiny";
  corpus_ = dir_ + "/data/absent.jsonl";
  EXPECT_EQ(Run({}).code, 4);
}

TEST_F(RunCommandTest, BadBinaryFlagIsAUsageError) {
  std::vector<std::string> args = {"qcal", "run", "--model", model_, "--corpus", corpus_,
                                   "--coordinator-bin", dir_ + "/nope"};
  std::ostringstream out, err;
  CliIo io{&out, &err, false};
  EXPECT_EQ(RunCli(args, io), 2);
  EXPECT_EQ(err.str(), "qcal: run: INVALID_ARGUMENT: --coordinator-bin " + dir_ +
                           "/nope is not an executable file\n");
}

TEST_F(RunCommandTest, InterruptCancelsTheJobAndStopsEverything) {
  ::setenv("FAKE_COORDINATOR_FINAL", "running", 1);
  // Ctrl-C once the job runs (the coordinator's log shows the submitted job's watch
  // only indirectly, so wait for the worker logs and a moment more).
  std::thread interrupter([this] {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!fs::exists(out_ + "/logs/worker-1.log") && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    absl::SleepFor(absl::Milliseconds(500));
    ::kill(::getpid(), SIGINT);
  });
  const absl::Time start = absl::Now();
  Result r = Run({"--db", db_});
  interrupter.join();
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_EQ(r.err, "qcal: run: CANCELLED: interrupted\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_TRUE(fs::exists(db_ + "/terminated"));
  EXPECT_EQ(ReadFile(db_ + "/cancelled.txt"), "job-000001-test");
}

}  // namespace
}  // namespace qcal::client
