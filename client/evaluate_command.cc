// evaluate JOB --eval-corpus FILE [--thresholds T,...] [--mode abs|mllm] [--budget X]
//          [--budget-metric res|ppl] [sampling flags] [--shard-size N]
//          [--batch-size N] [--wait]
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/command.h"
#include "client/evaluation.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "client/job_spec_flags.h"
#include "client/json_output.h"
#include "client/operation_wait.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

struct EvaluateFlags {
  std::string job_id;
  std::string eval_corpus;
  // As given: each occurrence may hold a comma-separated list.
  std::vector<std::string> thresholds;
  std::string mode;  // "", "abs", "mllm"
  BudgetFlags budget;
  SamplingFlags sampling;
  int32_t shard_size = 0;
  int32_t batch_size = 0;
  bool wait = false;
};

// "1,2,4" "8" -> {1, 2, 4, 8}: ascending and distinct (the order given does not
// matter). A usage error names a value that is not a finite number > 0.
absl::StatusOr<std::vector<double>> ParseThresholds(const std::vector<std::string>& given) {
  std::vector<double> out;
  for (const std::string& list : given) {
    for (absl::string_view item : absl::StrSplit(list, ',')) {
      const absl::string_view text = absl::StripAsciiWhitespace(item);
      double t = 0;
      if (!absl::SimpleAtod(text, &t) || !std::isfinite(t) || !(t > 0)) {
        return UsageError(absl::StrCat("--thresholds: \"", text,
                                       "\" is not a number > 0 (give e.g. 1,2,4)"));
      }
      out.push_back(t);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<v1::EvaluateRequest> ToRequest(const EvaluateFlags& flags) {
  v1::EvaluateRequest request;
  request.set_job_id(flags.job_id);
  auto thresholds = ParseThresholds(flags.thresholds);
  if (!thresholds.ok()) return thresholds.status();
  for (double t : *thresholds) request.add_thresholds(t);
  request.set_mode(flags.mode);
  request.set_eval_corpus(flags.eval_corpus);
  *request.mutable_eval_sampling() = ToSamplingOptions(flags.sampling);
  ApplyBudgetFlags(flags.budget, &request);
  request.set_shard_size(flags.shard_size);
  request.set_batch_size(flags.batch_size);
  return request;
}

absl::Status Evaluate(const CommandEnv& env, const EvaluateFlags& flags) {
  auto request = ToRequest(flags);
  if (!request.ok()) return request.status();
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::Operation op;
  {
    auto context = (*connection)->UnaryContext();
    if (grpc::Status s = stub->Evaluate(context.get(), *request, &op); !s.ok()) {
      return (*connection)->ToStatus(s);
    }
  }
  if (!flags.wait) {
    env.out() << (env.json() ? OperationToJsonLine(op) : op.name()) << "\n";
    return absl::OkStatus();
  }
  if (!env.json()) env.out() << "started " << op.name() << "\n" << std::flush;
  ScopedInterruptHandler interrupts;
  OperationDisplay display(env.io->out, env.display_mode());
  OperationWaitOptions options;
  options.call_timeout_seconds = env.flags->connection.timeout_seconds;
  auto done = WaitUntilDone(**connection, op, &display, options);
  display.Finish();
  if (!done.ok()) return done.status();
  if (absl::Status s = OperationOutcome(*done); !s.ok()) return s;
  auto response = EvaluateResponseOf(*done);
  if (!response.ok()) return response.status();
  return PrintResult(env, *response, FormatEvaluationTable(*response));
}

}  // namespace

void AddEvaluateCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<EvaluateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "evaluate",
      "Start a threshold evaluation of a calibrated job (simulated W8A8 accuracy and "
      "perplexity per threshold, shadow layers, a recommended threshold); prints the "
      "operation's name, or follows it with --wait");
  cmd->add_option("JOB", flags->job_id, "Job id (CALIBRATED)")->required();
  cmd->add_option("--eval-corpus", flags->eval_corpus,
                  "Evaluation corpus, as the coordinator sees it (same formats as "
                  "--corpus of submit)")
      ->required();
  cmd->add_option("--thresholds", flags->thresholds,
                  "Outlier thresholds, > 0: a comma list, or the flag repeated "
                  "[1,2,4,8,16,24,32,64,128,152,10000000]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->expected(1);
  cmd->add_option("--mode", flags->mode,
                  "abs: ori and top_0_1 on |x|; mllm: signed, as mllm computes them "
                  "[abs]")
      ->check(CLI::IsMember({"abs", "mllm"}));
  AddBudgetFlags(cmd, &flags->budget);
  SamplingFlagNames names;
  // --mode is abs|mllm here; the sampling mode has its own name.
  names.mode_flag = "--sampling-mode";
  names.num_samples_default = "256";
  names.seq_len_default = "the job's";
  AddSamplingFlags(cmd, &flags->sampling, names);
  cmd->add_option("--shard-size", flags->shard_size,
                  "Evaluation samples per shard [16]")
      ->check(CLI::Range(int32_t{1}, kMaxShardSize));
  cmd->add_option("--batch-size", flags->batch_size,
                  "Sequences per forward pass on the workers [the job's]")
      ->check(CLI::Range(int32_t{1}, kMaxBatchSize));
  cmd->add_flag("--wait", flags->wait,
                "Follow the evaluation and print its results (exit 3 if it ends with "
                "an error)");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Evaluate(env, *flags); });
}

}  // namespace qcal::client
