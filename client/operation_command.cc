// operation OP [--wait]: GetOperation, or WaitOperation until done.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "client/json_output.h"
#include "proto/qcal/v1/operations.grpc.pb.h"

namespace qcal::client {
namespace {

// Each WaitOperation asks the server to hold the call this long, so that an
// interrupt is noticed within it.
constexpr int kWaitSliceSeconds = 10;

struct OperationFlags {
  std::string name;
  bool wait = false;
};

std::string AnyType(const google::protobuf::Any& any) {
  const std::string& url = any.type_url();
  const size_t slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

void PrintOperation(const CommandEnv& env, const v1::Operation& op) {
  if (env.json()) {
    env.out() << OperationToJsonLine(op) << "\n";
    return;
  }
  env.out() << "operation: " << op.name() << "\n"
            << "done:      " << (op.done() ? "yes" : "no") << "\n";
  if (op.has_metadata()) env.out() << "metadata:  " << AnyType(op.metadata()) << "\n";
  if (op.has_error()) {
    env.out() << "error:     "
              << absl::StatusCodeToString(static_cast<absl::StatusCode>(op.error().code()))
              << ": " << op.error().message() << "\n";
  }
  if (op.has_response()) env.out() << "response:  " << AnyType(op.response()) << "\n";
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
  if (flags.wait) {
    ScopedInterruptHandler interrupts;
    while (!op.done()) {
      if (InterruptCount() > 0) return InterruptedError("interrupted");
      v1::WaitOperationRequest request;
      request.set_name(name);
      request.mutable_timeout()->set_seconds(kWaitSliceSeconds);
      auto context = (*connection)->UnaryContext(
          kWaitSliceSeconds + env.flags->connection.timeout_seconds);
      v1::Operation next;
      if (grpc::Status s = stub->WaitOperation(context.get(), request, &next); !s.ok()) {
        if (InterruptCount() > 0) return InterruptedError("interrupted");
        return (*connection)->ToStatus(s);
      }
      op = std::move(next);
    }
  }
  PrintOperation(env, op);
  if (flags.wait && op.has_error() && op.error().code() != 0) {
    const auto code = static_cast<absl::StatusCode>(op.error().code());
    return JobEndedError(absl::StatusCodeToString(code),
                         absl::StrCat("operation ", op.name(), " failed: ",
                                      op.error().message()));
  }
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
                "Wait until it is done (exit 3 if it ended with an error)");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Operation(env, *flags); });
}

}  // namespace qcal::client
