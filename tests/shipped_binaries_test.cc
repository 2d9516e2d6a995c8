// The shipped programs themselves, as a user runs them: `qcal-worker tokenize` on the
// reference tokenizations of both tokenizers, a job whose model folder tokenizes with
// SentencePiece through real qcal-coordinator and qcal-worker processes (statistics
// fetched with the real `qcal stats` equal `qcal-worker calibrate --corpus`), a
// tokenizer.model that does not load (the job fails with the reason, no worker
// aborts), and `qcal run` on that folder with an evaluation.
//
// These programs link gRPC's libprotobuf, libtorch and RocksDB; the unit tests of
// the same code do not, which is how SentencePiece once passed every unit test and
// aborted the worker (docs/sentencepiece.md).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e_util.h"
#include "tests/test_cluster.h"

namespace qcal {
namespace {

namespace fs = std::filesystem;
using namespace e2e;
using testing::ExitedZero;
using testing::ReadAll;
using testing::RunProgram;
using testing::TestCluster;

constexpr int kSamples = 24;
constexpr int kSeqLen = 64;

// A data root with models/llama-tiny-spm (llama-tiny's weights, spm4k's
// tokenizer.model and tokenizer_config.json, no tokenizer.json), the same folder with
// a tokenizer.model that is not a SentencePiece model, and the calibration corpus.
std::string MakeDataRoot(const std::string& dir) {
  const std::string root = dir + "/root";
  for (const char* name : {"llama-tiny-spm", "llama-tiny-badspm"}) {
    const std::string m = root + "/models/" + name;
    fs::create_directories(m);
    for (const char* f : {"config.json", "model.safetensors", "generation_config.json"}) {
      fs::copy_file(kData + "/models/llama-tiny/" + f, m + "/" + f);
    }
    fs::copy_file(kData + "/tokenizers/spm4k/tokenizer_config.json", m + "/tokenizer_config.json");
  }
  fs::copy_file(kData + "/tokenizers/spm4k/tokenizer.model",
                root + "/models/llama-tiny-spm/tokenizer.model");
  std::ofstream(root + "/models/llama-tiny-badspm/tokenizer.model") << "\x0a\xff not a model";
  fs::create_directories(root + "/corpus");
  fs::copy_file(kData + "/" + kCorpus, root + "/" + kCorpus);
  return root;
}

// The three calibration files in `a` and `b` hold the same statistics: SmoothQuant's
// absmax bit for bit, mllm's ori and top_0_1 (both modes) exactly, and all_stat's
// mean and std (from sums, whose order differs across shards) within 1e-9.
void ExpectSameCalibrationFiles(const std::string& a, const std::string& b) {
  ASSERT_TRUE(fs::exists(a + "/act_scales.safetensors")) << a;
  ASSERT_TRUE(fs::exists(b + "/act_scales.safetensors")) << b;
  EXPECT_EQ(ReadAll(a + "/act_scales.safetensors"), ReadAll(b + "/act_scales.safetensors"));
  for (const char* file : {"act_scales_distribution.json", "act_scales_distribution_abs.json"}) {
    const auto ja = nlohmann::json::parse(ReadAll(a + "/" + file));
    const auto jb = nlohmann::json::parse(ReadAll(b + "/" + file));
    EXPECT_EQ(ja["ori"], jb["ori"]) << file;
    EXPECT_EQ(ja["top_0_1"], jb["top_0_1"]) << file;
    ASSERT_EQ(ja["ori"].size(), 15u) << file;  // 2 layers x 7 linears, lm_head
    ASSERT_EQ(ja["all_stat"].size(), jb["all_stat"].size()) << file;
    for (const auto& [name, sides] : jb["all_stat"].items()) {
      for (const char* side : {"input", "output"}) {
        for (const char* m : {"mean", "std"}) {
          const double x = ja["all_stat"][name][side][m], y = sides[side][m];
          EXPECT_NEAR(x, y, 1e-9 * std::max(1.0, std::abs(y))) << file << " " << name << " " << side;
        }
      }
    }
  }
}

// `qcal-worker calibrate --corpus` on the folder: the single-process statistics.
void CalibrateInOneProcess(const std::string& model, const std::string& corpus,
                           const std::string& out, const std::string& dir) {
  const int status = RunProgram({QCAL_WORKER_BIN, "calibrate", "--model", model, "--corpus", corpus,
                                 "--num-samples", std::to_string(kSamples), "--seq-len",
                                 std::to_string(kSeqLen), "--threads", "1", "--out", out},
                                "", dir + "/calibrate.out", dir + "/calibrate.err");
  ASSERT_TRUE(ExitedZero(status)) << ReadAll(dir + "/calibrate.err");
}

TEST(ShippedBinariesTest, WorkerTokenizeReproducesBothReferenceTokenizations) {
  const std::string dir = TempDir("tokenize");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* name : {"bpe4k", "spm4k"}) {
    const std::string ref = kData + "/reference/tokenize_" + std::string(name) + ".jsonl";
    const int status =
        RunProgram({QCAL_WORKER_BIN, "tokenize", "--model", kData + "/tokenizers/" + name,
                    "--jsonl", "--no-special-tokens"},
                   ref, dir + "/out", dir + "/err");
    ASSERT_TRUE(ExitedZero(status)) << name << " exit " << status << ": " << ReadAll(dir + "/err");
    std::istringstream want(ReadAll(ref)), got(ReadAll(dir + "/out"));
    std::string w, g;
    int lines = 0;
    while (std::getline(want, w)) {
      ASSERT_TRUE(std::getline(got, g)) << name << " ends at line " << lines;
      EXPECT_EQ(g, nlohmann::json::parse(w)["ids"].dump()) << name << " line " << lines + 1;
      ++lines;
    }
    EXPECT_EQ(lines, 100) << name;
    EXPECT_FALSE(std::getline(got, g)) << name << " has extra lines";
    std::printf("qcal-worker tokenize --model %s: %d reference lines identical\n", name, lines);
  }
  // The reproduction: plain stdin, special tokens on (spm4k's BOS is id 1).
  std::ofstream(dir + "/hello") << "Hello world\n";
  const int status = RunProgram(
      {QCAL_WORKER_BIN, "tokenize", "--model", kData + "/tokenizers/spm4k"}, dir + "/hello",
      dir + "/out", dir + "/err");
  ASSERT_TRUE(ExitedZero(status)) << ReadAll(dir + "/err");
  EXPECT_EQ(ReadAll(dir + "/out").rfind("1 ", 0), 0u) << ReadAll(dir + "/out");
}

TEST(ShippedBinariesTest, SentencePieceFolderCalibratesThroughTheService) {
  const std::string dir = TempDir("spm-service");
  TestCluster c(dir);
  const std::string root = MakeDataRoot(dir);
  ASSERT_TRUE(c.StartCoordinator(root)) << c.Logs();
  c.AddWorker();
  c.AddWorker();
  v1::SubmitJobRequest good = Spec(kSamples, kSeqLen, 4, 4);
  good.mutable_spec()->set_model("models/llama-tiny-spm");
  const std::string id = Submit(c, good);
  const v1::Job job = WaitFinal(c, id);
  ASSERT_EQ(job.state(), v1::JOB_CALIBRATED) << job.DebugString() << c.Logs();
  EXPECT_EQ(job.progress().samples_done(), kSamples);

  // The statistics as the real client downloads them ...
  const std::string service_out = dir + "/service";
  fs::create_directories(service_out);
  for (auto [format, file] : {std::pair{"mllm", "act_scales_distribution.json"},
                              {"abs", "act_scales_distribution_abs.json"},
                              {"smoothquant", "act_scales.safetensors"}}) {
    const int status = RunProgram({QCAL_CLI_BIN, "--server", c.address(), "stats", id,
                                   "--format", format, "--out", service_out + "/" + file},
                                  "", dir + "/stats.out", dir + "/stats.err");
    ASSERT_TRUE(ExitedZero(status)) << format << ": " << ReadAll(dir + "/stats.err");
  }
  // ... equal those of `qcal-worker calibrate --corpus` on the same folder.
  CalibrateInOneProcess(root + "/models/llama-tiny-spm", root + "/" + kCorpus, dir + "/single", dir);
  ExpectSameCalibrationFiles(service_out, dir + "/single");

  // A tokenizer.model that does not load fails the job with the file's name and the
  // reason; every worker is still running and takes the next job.
  v1::SubmitJobRequest bad = good;
  bad.mutable_spec()->set_model("models/llama-tiny-badspm");
  const v1::Job failed = WaitFinal(c, Submit(c, bad));
  ASSERT_EQ(failed.state(), v1::JOB_FAILED) << failed.DebugString() << c.Logs();
  EXPECT_NE(failed.error().find("llama-tiny-badspm/tokenizer.model: not a SentencePiece model"),
            std::string::npos)
      << failed.error();
  std::printf("bad tokenizer.model: job FAILED: %s\n", failed.error().c_str());
  // `qcal report`: the data of the calibrated job, the page, and a clear refusal for
  // the failed one.
  ASSERT_TRUE(ExitedZero(RunProgram({QCAL_CLI_BIN, "--server", c.address(), "report", id, "--json"}, "",
                                 dir + "/report.json", dir + "/report.err")))
      << ReadAll(dir + "/report.err");
  const auto report = nlohmann::json::parse(ReadAll(dir + "/report.json"));
  EXPECT_EQ(report["format"], "qcal-report/1");
  EXPECT_EQ(report["job"]["samples"], kSamples);
  EXPECT_EQ(report["linears"].size(), 15u);
  EXPECT_TRUE(report["evaluation"].is_null());
  ASSERT_TRUE(ExitedZero(RunProgram({QCAL_CLI_BIN, "--server", c.address(), "report", id, "--out",
                                  dir + "/report.html"},
                                 "", dir + "/report.out", dir + "/report.err")))
      << ReadAll(dir + "/report.err");
  EXPECT_NE(ReadAll(dir + "/report.html").find("<script type=\"application/json\" id=\"qcal-report\">"),
            std::string::npos);
  const int refused = RunProgram({QCAL_CLI_BIN, "--server", c.address(), "report", failed.id(), "--json"},
                                 "", dir + "/report.out", dir + "/report.err");
  EXPECT_FALSE(ExitedZero(refused));
  EXPECT_NE(ReadAll(dir + "/report.err").find("a report needs a CALIBRATED job"), std::string::npos)
      << ReadAll(dir + "/report.err");
  for (auto& w : c.workers()) EXPECT_TRUE(w->running()) << c.Logs();
  EXPECT_EQ(c.Logs().find("FATAL"), std::string::npos) << c.Logs();
  const v1::Job again = WaitFinal(c, Submit(c, good));
  EXPECT_EQ(again.state(), v1::JOB_CALIBRATED) << again.DebugString() << c.Logs();
}

// `qcal run` as the README runs it: the coordinator and worker found next to `qcal`,
// calibration, evaluation and the exports of the recommended threshold.
TEST(ShippedBinariesTest, QcalRunCompletesOnASentencePieceFolder) {
  const std::string dir = TempDir("spm-run");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string root = MakeDataRoot(dir);
  const std::string model = root + "/models/llama-tiny-spm";
  const std::string corpus = root + "/" + kCorpus;
  const std::string out = dir + "/qcal-out";
  const int status = RunProgram(
      {QCAL_CLI_BIN, "run", "--model", model, "--corpus", corpus, "--num-samples",
       std::to_string(kSamples), "--seq-len", std::to_string(kSeqLen), "--eval-corpus",
       root + "/" + kCorpus, "--eval-num-samples", "8", "--workers", "2", "--threads", "1",
       "--out", out},
      "", dir + "/run.out", dir + "/run.err", std::chrono::seconds(600));
  ASSERT_TRUE(ExitedZero(status)) << ReadAll(dir + "/run.out") << ReadAll(dir + "/run.err");
  const std::string printed = ReadAll(dir + "/run.out");
  EXPECT_NE(printed.find("CALIBRATED: " + std::to_string(kSamples) + " samples"), std::string::npos)
      << printed;
  EXPECT_TRUE(fs::exists(out + "/evaluation.json")) << printed;
  EXPECT_TRUE(fs::exists(out + "/model_res_acc.json")) << printed;
  EXPECT_TRUE(fs::exists(out + "/export-mllm")) << printed;
  EXPECT_TRUE(fs::exists(out + "/export-compressed-tensors")) << printed;
  CalibrateInOneProcess(model, corpus, dir + "/single", dir);
  ExpectSameCalibrationFiles(out, dir + "/single");
  std::printf("%s", printed.c_str());
}

}  // namespace
}  // namespace qcal
