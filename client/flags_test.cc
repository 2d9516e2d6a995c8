// Flag names and ranges. Every rejected value must be a usage error (exit 2, one
// line) found before any call: the server address is a closed port, so a command
// that got past parsing would fail with 6 instead.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "client/job_spec_flags.h"
#include "gtest/gtest.h"

namespace qcal::client {
namespace {

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunQcal(std::vector<std::string> args) {
  std::vector<std::string> full = {"qcal", "--server", "127.0.0.1:1", "--timeout", "2"};
  full.insert(full.end(), args.begin(), args.end());
  std::ostringstream out, err;
  CliIo io{&out, &err, false};
  const int code = RunCli(full, io);
  return {code, out.str(), err.str()};
}

std::vector<std::string> Submit(std::vector<std::string> extra) {
  std::vector<std::string> args = {"submit", "--model", "m", "--corpus", "c"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

void ExpectUsageError(const std::vector<std::string>& args, const std::string& command,
                      const std::string& mentions) {
  std::string joined;
  for (const std::string& a : args) joined += a + " ";
  const Result r = RunQcal(args);
  EXPECT_EQ(r.code, 2) << joined << "\n" << r.err;
  EXPECT_EQ(r.out, "") << joined;
  const std::vector<std::string> lines = absl::StrSplit(r.err, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << joined << "\n" << r.err;
  const std::string prefix = command.empty() ? "qcal: INVALID_ARGUMENT: "
                                             : "qcal: " + command + ": INVALID_ARGUMENT: ";
  EXPECT_EQ(lines[0].rfind(prefix, 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(mentions), std::string::npos) << lines[0];
}

TEST(FlagsTest, SamplingFlagsParseIntoTheSpec) {
  CLI::App app;
  JobSpecFlags flags;
  AddJobSpecFlags(&app, &flags);
  std::vector<std::string> args = {
      "--model",       "/m",          "--corpus",    "/c.jsonl", "--num-samples",
      "10000000",      "--seq-len",   "16777216",    "--mode",   "document",
      "--order",       "sequential",  "--seed",      "18446744073709551615",
      "--skip-docs",   "0",           "--skip-bad-lines",        "--shard-size",
      "4096",          "--report-interval",          "3600",     "--batch-size",
      "1024",          "--name",      "x"};
  std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
  app.parse(args);
  const v1::JobSpec spec = ToJobSpec(flags);
  EXPECT_EQ(spec.model(), "/m");
  EXPECT_EQ(spec.corpus(), "/c.jsonl");
  EXPECT_EQ(spec.sampling().num_samples(), 10'000'000);
  EXPECT_EQ(spec.sampling().seq_len(), 16'777'216);
  EXPECT_EQ(spec.sampling().mode(), "document");
  EXPECT_EQ(spec.sampling().order(), "sequential");
  EXPECT_EQ(spec.sampling().seed(), 18446744073709551615u);
  EXPECT_EQ(spec.sampling().skip_docs(), 0);
  EXPECT_TRUE(spec.sampling().skip_bad_lines());
  EXPECT_EQ(spec.shard_size(), 4096);
  EXPECT_EQ(spec.report_interval_seconds(), 3600);
  EXPECT_EQ(spec.batch_size(), 1024);
  EXPECT_EQ(spec.display_name(), "x");
}

TEST(FlagsTest, SeedZeroIsSentWhenGiven) {
  CLI::App app;
  JobSpecFlags flags;
  AddJobSpecFlags(&app, &flags);
  app.parse("--model m --corpus c --seed 0", false);
  ASSERT_TRUE(flags.sampling.seed.has_value());
  EXPECT_EQ(*flags.sampling.seed, 0u);
  EXPECT_FALSE(flags.sampling.num_samples.has_value());
}

TEST(FlagsTest, OutOfRangeValuesAreUsageErrors) {
  const struct {
    std::vector<std::string> extra;
    const char* mentions;
  } kCases[] = {
      {{"--num-samples", "0"}, "--num-samples"},
      {{"--num-samples", "10000001"}, "--num-samples"},
      {{"--num-samples", "many"}, "--num-samples"},
      {{"--seq-len", "0"}, "--seq-len"},
      {{"--seq-len", "16777217"}, "--seq-len"},
      {{"--mode", "stream"}, "--mode"},
      {{"--order", "random"}, "--order"},
      {{"--seed", "-1"}, "--seed"},
      {{"--seed", "18446744073709551616"}, "--seed"},
      {{"--skip-docs", "-1"}, "--skip-docs"},
      {{"--shard-size", "0"}, "--shard-size"},
      {{"--shard-size", "4097"}, "--shard-size"},
      {{"--report-interval", "0"}, "--report-interval"},
      {{"--report-interval", "3601"}, "--report-interval"},
      {{"--batch-size", "0"}, "--batch-size"},
      {{"--batch-size", "1025"}, "--batch-size"},
      {{"--num_samples", "4"}, "num_samples"},
      {{"--bogus"}, "--bogus"},
  };
  for (const auto& c : kCases) ExpectUsageError(Submit(c.extra), "submit", c.mentions);
}

TEST(FlagsTest, MissingOrBadArgumentsAreUsageErrors) {
  ExpectUsageError({"submit", "--corpus", "c"}, "submit", "--model");
  ExpectUsageError({"submit", "--model", "m"}, "submit", "--corpus");
  ExpectUsageError({"status"}, "status", "JOB");
  ExpectUsageError({"watch"}, "watch", "JOB");
  ExpectUsageError({"cancel"}, "cancel", "JOB");
  ExpectUsageError({"list", "--page-size", "0"}, "list", "--page-size");
  ExpectUsageError({"list", "--page-size", "1001"}, "list", "--page-size");
  ExpectUsageError({"list", "--state", "done"}, "list", "--state");
  ExpectUsageError({"stats", "job-1", "--out", "x"}, "stats", "--format");
  ExpectUsageError({"stats", "job-1", "--format", "csv", "--out", "x"}, "stats", "--format");
  ExpectUsageError({"stats", "job-1", "--format", "mllm"}, "stats", "--out");
  ExpectUsageError({"operation"}, "operation", "OP");
  ExpectUsageError({"run", "--model", "m", "--corpus", "c", "--workers", "0"}, "run",
                   "--workers");
  ExpectUsageError({"run", "--model", "m", "--corpus", "c", "--threads", "0"}, "run",
                   "--threads");
  ExpectUsageError({"run", "--model", "m", "--corpus", "c", "--eval-num-samples", "0"},
                   "run", "--eval-num-samples");
  ExpectUsageError({"run", "--model", "m", "--corpus", "c", "--eval-seq-len", "1"}, "run",
                   "--eval-seq-len");
  ExpectUsageError({"stats", "job-1", "--format", "model_res_acc", "--out", "x"}, "stats",
                   "--format");
  ExpectUsageError({"shadow-layers"}, "shadow-layers", "JOB");
  ExpectUsageError({"shadow-layers", "j", "--threshold", "-2"}, "shadow-layers",
                   "--threshold");
  ExpectUsageError({"evaluate", "--eval-corpus", "e"}, "evaluate", "JOB");
  ExpectUsageError({"evaluate", "j"}, "evaluate", "--eval-corpus");
  const struct {
    std::vector<std::string> extra;
    const char* mentions;
  } kEvaluateCases[] = {
      {{"--mode", "document"}, "--mode"},
      {{"--budget", "-0.1"}, "--budget"},
      {{"--budget-metric", "accuracy"}, "--budget-metric"},
      {{"--sampling-mode", "stream"}, "--sampling-mode"},
      {{"--num-samples", "0"}, "--num-samples"},
      {{"--seq-len", "0"}, "--seq-len"},
      {{"--order", "random"}, "--order"},
      {{"--seed", "-1"}, "--seed"},
      {{"--seed", "18446744073709551616"}, "--seed"},
      {{"--shard-size", "4097"}, "--shard-size"},
      {{"--batch-size", "0"}, "--batch-size"},
      {{"--thresholds", "2,x"}, "--thresholds"},
  };
  for (const auto& c : kEvaluateCases) {
    std::vector<std::string> args = {"evaluate", "j", "--eval-corpus", "e"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    ExpectUsageError(args, "evaluate", c.mentions);
  }
  ExpectUsageError({"--timeout", "0", "list"}, "list", "--timeout");
  ExpectUsageError({}, "", "subcommand");
  ExpectUsageError({"frobnicate"}, "", "frobnicate");
}

TEST(FlagsTest, HelpAndVersionExit0) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"submit", "--help"}, {"run", "--help"},
        {"evaluate", "--help"}, {"shadow-layers", "--help"}, {"--version"}}) {
    const Result r = RunQcal(args);
    EXPECT_EQ(r.code, 0) << args[0];
    EXPECT_FALSE(r.out.empty());
  }
  const Result help = RunQcal({"--help"});
  EXPECT_NE(help.out.find("Exit codes:"), std::string::npos);
  EXPECT_NE(help.out.find("7  UNAUTHENTICATED"), std::string::npos);
  const Result submit = RunQcal({"submit", "--help"});
  for (const char* flag :
       {"--num-samples", "--seq-len", "--mode", "--order", "--seed", "--skip-docs",
        "--skip-bad-lines", "--shard-size", "--report-interval", "--batch-size", "--name",
        "--request-id", "--wait"}) {
    EXPECT_NE(submit.out.find(flag), std::string::npos) << flag;
  }
  const Result evaluate = RunQcal({"evaluate", "--help"});
  for (const char* flag :
       {"--eval-corpus", "--thresholds", "--mode", "--budget", "--budget-metric",
        "--num-samples", "--seq-len", "--sampling-mode", "--order", "--seed",
        "--skip-docs", "--skip-bad-lines", "--shard-size", "--batch-size", "--wait",
        "named --sampling-mode here because --mode is taken"}) {
    EXPECT_NE(evaluate.out.find(flag), std::string::npos) << flag;
  }
  const Result help_run = RunQcal({"run", "--help"});
  for (const char* flag : {"--eval-corpus", "--eval-num-samples", "--eval-seq-len"}) {
    EXPECT_NE(help_run.out.find(flag), std::string::npos) << flag;
  }
  for (const char* command : {"evaluate", "shadow-layers"}) {
    EXPECT_NE(help.out.find(command), std::string::npos) << command;
  }
}

TEST(FlagsTest, GlobalFlagsWorkAfterTheCommandToo) {
  // Past parsing, the closed port gives UNAVAILABLE (6), not a usage error.
  EXPECT_EQ(RunQcal({"status", "job-1", "--json", "--timeout", "1"}).code, 6);
}

}  // namespace
}  // namespace qcal::client
