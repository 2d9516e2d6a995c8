// stats JOB --format mllm|abs|smoothquant|model-res-acc --out FILE [--partial]
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/evaluation.h"
#include "client/exit_codes.h"
#include "client/job_stats.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

constexpr char kModelResAcc[] = "model-res-acc";

struct StatsFlags {
  std::string job_id;
  std::string format;
  std::string out;
  bool partial = false;
};

// mllm's model_res_acc.json from the job's newest finished evaluation, keyed by the
// job's model path (mllm keys it by the --model_name it loaded).
absl::Status ModelResAcc(const CommandEnv& env, const StatsFlags& flags) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::GetJobRequest request;
  request.set_job_id(flags.job_id);
  v1::Job job;
  {
    auto context = (*connection)->UnaryContext();
    if (grpc::Status s = stub->GetJob(context.get(), request, &job); !s.ok()) {
      return (*connection)->ToStatus(s);
    }
  }
  auto found = FindNewestEvaluation(**connection, flags.job_id);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", flags.job_id, " has no finished evaluation; run `qcal evaluate ",
        flags.job_id, " --eval-corpus FILE --wait` first"));
  }
  const FoundEvaluation& evaluation = **found;
  auto json = ModelResAccJsonOf(evaluation.response, job.spec().model());
  if (!json.ok()) return json.status();
  if (absl::Status s = WriteFileAtomically(flags.out, *json); !s.ok()) return s;
  const int thresholds = evaluation.response.thresholds_size();
  if (env.json()) {
    nlohmann::ordered_json j;
    j["job_id"] = flags.job_id;
    j["format"] = flags.format;
    j["out"] = flags.out;
    j["operation"] = evaluation.operation;
    j["model"] = job.spec().model();
    j["thresholds"] = thresholds;
    env.out() << j.dump() << "\n";
  } else {
    env.out() << "wrote " << flags.out << " (" << flags.format << ", " << thresholds
              << " thresholds, evaluation " << evaluation.operation << ")\n";
  }
  return absl::OkStatus();
}

absl::Status Stats(const CommandEnv& env, const StatsFlags& flags) {
  if (flags.format == kModelResAcc) {
    if (absl::Status s = CheckOutputPath(flags.out); !s.ok()) return s;
    return ModelResAcc(env, flags);
  }
  auto format = ParseStatsFormat(flags.format);
  if (!format.ok()) return format.status();
  if (absl::Status s = CheckOutputPath(flags.out); !s.ok()) return s;
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stats = FetchJobStats(**connection, flags.job_id, flags.partial);
  if (!stats.ok()) return stats.status();
  if (absl::Status s = WriteStatsFile(stats->set, *format, flags.out); !s.ok()) return s;
  if (env.json()) {
    nlohmann::ordered_json j;
    j["job_id"] = flags.job_id;
    j["format"] = flags.format;
    j["out"] = flags.out;
    j["state"] = v1::JobState_Name(stats->state);
    j["linears"] = stats->set.size();
    j["tokens"] = stats->set.tokens();
    j["samples"] = stats->samples;
    env.out() << j.dump() << "\n";
  } else {
    env.out() << "wrote " << flags.out << " (" << flags.format << ", "
              << stats->set.size() << " linears, " << stats->set.tokens()
              << " tokens, job " << v1::JobState_Name(stats->state) << ")\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddStatsCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<StatsFlags>();
  CLI::App* cmd = app.add_subcommand(
      "stats",
      "Download a job's activation statistics (or its evaluation's model_res_acc.json) "
      "into one file");
  cmd->add_option("JOB", flags->job_id, "Job id")->required();
  cmd->add_option("--format", flags->format,
                  "mllm: act_scales_distribution.json as mllm computes it; abs: the "
                  "same on |x|; smoothquant: act_scales safetensors; model-res-acc: "
                  "mllm's model_res_acc.json from the job's newest finished evaluation")
      ->required()
      ->check(CLI::IsMember({"mllm", "abs", "smoothquant", kModelResAcc}));
  cmd->add_option("--out", flags->out, "Output file")->required();
  cmd->add_flag("--partial", flags->partial,
                "Allow the statistics of a job that is not CALIBRATED yet");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Stats(env, *flags); });
}

}  // namespace qcal::client
