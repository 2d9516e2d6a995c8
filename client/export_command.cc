// export JOB (--threshold T | --threshold recommended) --format F [--smoothing S]
//        [--fuse] [--per-channel] [--mode abs|mllm] --out DIR [--wait]
#include <cmath>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/export_request.h"
#include "client/interrupt.h"
#include "client/json_output.h"
#include "client/operation_wait.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {

absl::StatusOr<v1::ExportRequest> ToExportRequest(const ExportFlags& flags) {
  v1::ExportRequest request;
  request.set_job_id(flags.job_id);
  if (flags.threshold == "recommended") {
    request.set_recommended(true);
  } else {
    double t = 0;
    if (!absl::SimpleAtod(flags.threshold, &t) || !std::isfinite(t) || !(t > 0)) {
      return UsageError(absl::StrCat("--threshold: \"", flags.threshold,
                                     "\" is neither a number > 0 nor \"recommended\""));
    }
    request.set_threshold(t);
  }
  request.set_format(flags.format);
  request.set_smoothing(flags.smoothing);
  request.set_fuse(flags.fuse);
  request.set_per_channel_weights(flags.per_channel);
  request.set_mode(flags.mode);
  request.set_output(flags.out);
  return request;
}

absl::StatusOr<v1::ExportResponse> ExportResponseOf(const v1::Operation& op) {
  v1::ExportResponse response;
  if (!op.response().Is<v1::ExportResponse>() || !op.response().UnpackTo(&response)) {
    return absl::InternalError(absl::StrCat(op.name(), " did not return an ExportResponse"));
  }
  return response;
}

std::string FormatExportSummary(const v1::ExportResponse& r) {
  std::string layers = absl::StrCat("{", absl::StrJoin(r.shadow_layers(), ", "), "}");
  return absl::StrCat("exported ", r.format(), " of ", r.job_id(), " at threshold ",
                      r.threshold(), " (smoothing ", r.smoothing(), ", shadow layers ", layers,
                      ", ", r.quantized_linears(), " int8 linears, ", r.files_size(),
                      " files, ", r.bytes(), " bytes) to ", r.output_dir(), "\n");
}

namespace {

// The Export call: the operation it started.
absl::StatusOr<v1::Operation> StartExport(const Connection& connection,
                                          const v1::ExportRequest& request) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  v1::Operation op;
  auto context = connection.UnaryContext();
  if (grpc::Status s = stub->Export(context.get(), request, &op); !s.ok()) {
    return connection.ToStatus(s);
  }
  return op;
}

}  // namespace

absl::StatusOr<v1::ExportResponse> RunExport(Connection& connection,
                                             const v1::ExportRequest& request,
                                             OperationDisplay* display,
                                             double call_timeout_seconds) {
  auto op = StartExport(connection, request);
  if (!op.ok()) return op.status();
  OperationWaitOptions options;
  options.call_timeout_seconds = call_timeout_seconds;
  auto done = WaitUntilDone(connection, *op, display, options);
  if (!done.ok()) return done.status();
  if (absl::Status s = OperationOutcome(*done); !s.ok()) return s;
  return ExportResponseOf(*done);
}

namespace {

absl::Status Export(const CommandEnv& env, const ExportFlags& flags) {
  auto request = ToExportRequest(flags);
  if (!request.ok()) return request.status();
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  if (!flags.wait) {
    auto op = StartExport(**connection, *request);
    if (!op.ok()) return op.status();
    env.out() << (env.json() ? OperationToJsonLine(*op) : op->name()) << "\n";
    return absl::OkStatus();
  }
  ScopedInterruptHandler interrupts;
  OperationDisplay display(env.io->out, env.display_mode());
  auto response =
      RunExport(**connection, *request, &display, env.flags->connection.timeout_seconds);
  display.Finish();
  if (!response.ok()) return response.status();
  return PrintResult(env, *response, FormatExportSummary(*response));
}

}  // namespace

void AddExportCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<ExportFlags>();
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Export a calibrated job: mllm's int8 shadow model, int8 safetensors, a W8A8 "
      "compressed-tensors checkpoint (vLLM), or the statistics files; prints the "
      "operation's name, or follows it with --wait");
  cmd->add_option("JOB", flags->job_id, "Job id (CALIBRATED)")->required();
  cmd->add_option("--threshold", flags->threshold,
                  "Outlier threshold (> 0), or \"recommended\": the newest evaluation's "
                  "recommendation")
      ->required();
  cmd->add_option("--format", flags->format,
                  "mllm | safetensors | compressed-tensors | stats [mllm]")
      ->check(CLI::IsMember({"mllm", "safetensors", "compressed-tensors", "stats"}));
  cmd->add_option("--smoothing", flags->smoothing,
                  "none | smoothquant[:ALPHA] | logeq (safetensors and compressed-tensors "
                  "only) [none]");
  cmd->add_flag("--fuse", flags->fuse,
                "Fold the smoothing into the weights (otherwise safetensors carries "
                "per-linear migration_scale tensors)");
  cmd->add_flag("--per-channel", flags->per_channel,
                "Per-output-channel weight scales (safetensors only)");
  cmd->add_option("--mode", flags->mode,
                  "abs: ori and top_0_1 on |x|; mllm: signed, as mllm computes them [abs]")
      ->check(CLI::IsMember({"abs", "mllm"}));
  cmd->add_option("--out", flags->out,
                  "Output folder under the coordinator's --output-root (relative to it, "
                  "or absolute inside it); must not exist")
      ->required();
  cmd->add_flag("--wait", flags->wait,
                "Follow the export and print what it wrote (exit 3 if it ends with an "
                "error)");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Export(env, *flags); });
}

}  // namespace qcal::client
