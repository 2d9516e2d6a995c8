// operation OP [--wait]: GetOperation, or WaitOperation until done.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/evaluation.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "client/json_output.h"
#include "client/operation_wait.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/operations.grpc.pb.h"

namespace qcal::client {
namespace {

struct OperationFlags {
  std::string name;
  bool wait = false;
};

std::string AnyType(const google::protobuf::Any& any) {
  const std::string& url = any.type_url();
  const size_t slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

// "qcal.v1.EvaluateMetadata (job job-1, 12/48 units)" for the kinds this client
// knows; the type otherwise.
std::string DescribeMetadata(const v1::Operation& op) {
  std::string out = AnyType(op.metadata());
  v1::EvaluateMetadata meta;
  if (op.metadata().Is<v1::EvaluateMetadata>() && op.metadata().UnpackTo(&meta)) {
    absl::StrAppend(&out, " (job ", meta.job_id(), ", ", meta.units_done(), "/",
                    meta.units_total(), " units)");
  }
  return out;
}

void PrintOperation(const CommandEnv& env, const v1::Operation& op) {
  if (env.json()) {
    env.out() << OperationToJsonLine(op) << "\n";
    return;
  }
  env.out() << "operation: " << op.name() << "\n"
            << "done:      " << (op.done() ? "yes" : "no") << "\n";
  if (op.has_metadata()) env.out() << "metadata:  " << DescribeMetadata(op) << "\n";
  if (const std::string error = OperationErrorText(op); !error.empty()) {
    env.out() << "error:     " << error << "\n";
  }
  if (op.has_response()) {
    env.out() << "response:  " << AnyType(op.response()) << "\n";
    v1::EvaluateResponse response;
    if (op.response().Is<v1::EvaluateResponse>() && op.response().UnpackTo(&response)) {
      env.out() << FormatEvaluationTable(response);
    }
  }
}

absl::Status Operation(const CommandEnv& env, const OperationFlags& flags) {
  std::string name = flags.name;
  if (name.rfind("operations/", 0) != 0) name = "operations/" + name;
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::Operations::NewStub((*connection)->channel());
  v1::Operation op;
  {
    v1::GetOperationRequest request;
    request.set_name(name);
    auto context = (*connection)->UnaryContext();
    if (grpc::Status s = stub->GetOperation(context.get(), request, &op); !s.ok()) {
      return (*connection)->ToStatus(s);
    }
  }
  if (flags.wait && !op.done()) {
    ScopedInterruptHandler interrupts;
    OperationDisplay display(env.io->out, env.display_mode());
    OperationWaitOptions options;
    options.call_timeout_seconds = env.flags->connection.timeout_seconds;
    auto done = WaitUntilDone(**connection, op, &display, options);
    display.Finish();
    if (!done.ok()) return done.status();
    op = *std::move(done);
  }
  PrintOperation(env, op);
  if (flags.wait) return OperationOutcome(op);
  return absl::OkStatus();
}

}  // namespace

void AddOperationCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<OperationFlags>();
  CLI::App* cmd = app.add_subcommand(
      "operation", "Show a long-running operation (evaluation, export)");
  cmd->add_option("OP", flags->name, "Operation name (operations/<id>, or just <id>)")
      ->required();
  cmd->add_flag("--wait", flags->wait,
                "Wait until it is done, showing its progress (exit 3 if it ended with "
                "an error)");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Operation(env, *flags); });
}

}  // namespace qcal::client
