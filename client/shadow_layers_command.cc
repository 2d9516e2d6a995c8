// shadow-layers JOB [--threshold T [--mode abs|mllm] | --recommended]
#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/evaluation.h"
#include "client/exit_codes.h"
#include "client/job_stats.h"
#include "client/shadow_layers.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

struct ShadowFlags {
  std::string job_id;
  std::optional<double> threshold;
  bool recommended = false;
  std::string mode;  // "": the evaluation's, else abs
};

absl::StatusOr<v1::Job> GetJob(const Connection& connection, const std::string& job_id) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = connection.UnaryContext();
  if (grpc::Status s = stub->GetJob(context.get(), request, &job); !s.ok()) {
    return connection.ToStatus(s);
  }
  return job;
}

absl::StatusOr<ShadowSelection> Recommended(const std::string& job_id,
                                            const std::optional<FoundEvaluation>& found) {
  if (!found) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " has no finished evaluation to take the recommended threshold "
        "from; run `qcal evaluate ", job_id, " --eval-corpus FILE --wait` first, or give "
        "--threshold T to decide from the statistics"));
  }
  const v1::ThresholdResult* result = RecommendedResult(found->response);
  if (result == nullptr) {
    const std::string& note = found->response.recommendation_note();
    return absl::FailedPreconditionError(absl::StrCat(
        "evaluation ", found->operation, " of job ", job_id, " recommends no threshold",
        note.empty() ? "" : absl::StrCat(" (", note, ")"),
        "; give --threshold T, or evaluate again with a larger --budget"));
  }
  return SelectionFromEvaluation(job_id, found->operation, found->response, *result,
                                 /*recommended=*/true);
}

absl::Status ShadowLayersCommand(const CommandEnv& env, const ShadowFlags& flags) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto job = GetJob(**connection, flags.job_id);
  if (!job.ok()) return job.status();
  auto found = FindNewestEvaluation(**connection, flags.job_id);
  if (!found.ok()) return found.status();

  absl::StatusOr<ShadowSelection> selection;
  if (!flags.threshold) {
    selection = Recommended(flags.job_id, *found);
  } else {
    const std::string evaluated_mode =
        *found ? ((*found)->response.mode().empty() ? "abs" : (*found)->response.mode())
               : "abs";
    const std::string mode = flags.mode.empty() ? evaluated_mode : flags.mode;
    const v1::ThresholdResult* result =
        *found && mode == evaluated_mode
            ? FindThresholdResult((*found)->response, *flags.threshold)
            : nullptr;
    if (result != nullptr) {
      const auto& response = (*found)->response;
      const bool recommended = response.has_recommended_threshold() &&
                               response.recommended_threshold() == *flags.threshold;
      selection = SelectionFromEvaluation(flags.job_id, (*found)->operation, response,
                                          *result, recommended);
    } else {
      auto parsed_mode = ParseEvalMode(mode, "--mode");
      if (!parsed_mode.ok()) return parsed_mode.status();
      auto stats = FetchJobStats(**connection, flags.job_id, /*allow_partial=*/false);
      if (!stats.ok()) return stats.status();
      selection = SelectionFromStatistics(flags.job_id, stats->set, *flags.threshold,
                                          *parsed_mode, job->resolved_model(),
                                          job->architecture());
    }
  }
  if (!selection.ok()) return selection.status();
  env.out() << (env.json() ? ShadowSelectionJson(*selection) + "\n"
                           : FormatShadowSelection(*selection));
  return absl::OkStatus();
}

}  // namespace

void AddShadowLayersCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<ShadowFlags>();
  CLI::App* cmd = app.add_subcommand(
      "shadow-layers",
      "Print a job's shadow layers as a runtime needs them (e.g. {1, 2, 26}) and the "
      "not-clipped linears, at the recommended threshold of its newest evaluation or "
      "at a given threshold");
  cmd->add_option("JOB", flags->job_id, "Job id")->required();
  CLI::Option* threshold =
      cmd->add_option_function<double>(
             "--threshold", [f = flags.get()](const double& v) { f->threshold = v; },
             "This threshold: the newest evaluation's result for it, or else decided "
             "here from the job's statistics")
          ->check(CLI::Validator(
              [](std::string& value) -> std::string {
                double t = 0;
                if (!absl::SimpleAtod(value, &t) || !std::isfinite(t) || !(t > 0)) {
                  return "must be a finite number > 0";
                }
                return "";
              },
              "POSITIVE"));
  CLI::Option* recommended = cmd->add_flag(
      "--recommended", flags->recommended,
      "The recommended threshold of the newest evaluation (the default)");
  threshold->excludes(recommended);
  cmd->add_option("--mode", flags->mode,
                  "With --threshold: abs or mllm [the evaluation's, else abs]; a mode "
                  "the evaluation did not use is decided from the statistics")
      ->check(CLI::IsMember({"abs", "mllm"}))
      ->needs(threshold);
  SetAction(cmd, slot, [flags](const CommandEnv& env) {
    return ShadowLayersCommand(env, *flags);
  });
}

}  // namespace qcal::client
