#include "client/operation_wait.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/operations.grpc.pb.h"

namespace qcal::client {
namespace {

constexpr int kBarWidth = 24;
constexpr double kCancelTimeoutSeconds = 2;
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

std::string Units(const v1::Operation& op) {
  const std::optional<OperationUnits> units = UnitsOf(op);
  if (!units) return "";
  return absl::StrCat(units->done, "/", units->total);
}

}  // namespace

std::string OperationStateName(const v1::Operation& op) {
  if (!op.done()) return "RUNNING";
  if (!op.has_error() || op.error().code() == 0) return "DONE";
  if (op.error().code() == static_cast<int>(absl::StatusCode::kCancelled)) {
    return "CANCELLED";
  }
  return "FAILED";
}

std::optional<OperationUnits> UnitsOf(const v1::Operation& op) {
  if (!op.has_metadata() || !op.metadata().Is<v1::EvaluateMetadata>()) return std::nullopt;
  v1::EvaluateMetadata meta;
  if (!op.metadata().UnpackTo(&meta)) return std::nullopt;
  return OperationUnits{meta.units_done(), meta.units_total()};
}

std::string OperationErrorText(const v1::Operation& op) {
  if (!op.has_error() || op.error().code() == 0) return "";
  const auto code = static_cast<absl::StatusCode>(op.error().code());
  std::string message = OneLine(op.error().message());
  if (message.empty()) message = "no message";
  return absl::StrCat(absl::StatusCodeToString(code), ": ", message);
}

std::string FormatOperationProgressLine(const v1::Operation& op, absl::Duration elapsed) {
  std::string line = absl::StrCat(op.name(), " ", OperationStateName(op), " ");
  if (const std::optional<OperationUnits> units = UnitsOf(op)) {
    absl::StrAppend(&line, FormatBar(units->done, units->total, kBarWidth), " ",
                    units->done, "/", units->total, " units  ");
  }
  absl::StrAppend(&line, FormatElapsed(elapsed));
  return line;
}

std::string FormatOperationPlainLine(const v1::Operation& op, absl::Duration elapsed) {
  std::string line = absl::StrCat(op.name(), " ", OperationStateName(op));
  if (const std::string units = Units(op); !units.empty()) {
    absl::StrAppend(&line, " units ", units);
  }
  absl::StrAppend(&line, " elapsed ", FormatElapsed(elapsed));
  return line;
}

std::string FormatOperationFinalLine(const v1::Operation& op, absl::Duration elapsed) {
  const std::string head = absl::StrCat(op.name(), " ", OperationStateName(op));
  if (!op.done()) return FormatOperationPlainLine(op, elapsed);
  if (const std::string error = OperationErrorText(op); !error.empty()) {
    return absl::StrCat(head, " after ", FormatElapsed(elapsed), ": ", error);
  }
  const std::string units = Units(op);
  return absl::StrCat(head, ": ", units.empty() ? "" : absl::StrCat(units, " units "),
                      "in ", FormatElapsed(elapsed));
}

DisplayLines OperationDisplay::Lines(const v1::Operation& op, absl::Time now) const {
  // JSON mode shows nothing while waiting: the command prints its result as JSON.
  DisplayLines lines;
  const absl::Duration elapsed = now - first_seen_;
  lines.terminal = FormatOperationProgressLine(op, elapsed);
  lines.plain = FormatOperationPlainLine(op, elapsed);
  lines.plain_key = absl::StrCat(OperationStateName(op), ":", Units(op));
  if (op.done()) lines.final = FormatOperationFinalLine(op, elapsed);
  return lines;
}

void OperationDisplay::Update(const v1::Operation& op, absl::Time now) {
  if (line_.finished()) return;
  if (!op_.has_value()) first_seen_ = now;
  op_ = op;
  line_.Show(Lines(op, now), now);
}

void OperationDisplay::Finish(absl::Time now) {
  if (!op_.has_value()) return line_.Finish(nullptr, now);
  const DisplayLines last = Lines(*op_, now);
  line_.Finish(&last, now);
}

absl::StatusOr<v1::Operation> WaitUntilDone(const Connection& connection, v1::Operation op,
                                            OperationDisplay* display,
                                            const OperationWaitOptions& options) {
  auto stub = v1::Operations::NewStub(connection.channel());
  const std::string name = op.name();
  absl::Time last_heard = absl::Now();
  absl::Duration backoff = absl::Milliseconds(250);
  if (display != nullptr) display->Update(op);
  const auto stop_reason = [&options]() -> absl::Status {
    if (InterruptCount() > 0) return InterruptedError("interrupted");
    if (options.health_check) return options.health_check();
    return absl::OkStatus();
  };
  while (!op.done()) {
    if (absl::Status why = stop_reason(); !why.ok()) return why;
    v1::WaitOperationRequest request;
    request.set_name(name);
    const int64_t slice_ms = absl::ToInt64Milliseconds(options.slice);
    request.mutable_timeout()->set_seconds(slice_ms / 1000);
    request.mutable_timeout()->set_nanos(static_cast<int32_t>(slice_ms % 1000) * 1'000'000);
    auto context = connection.UnaryContext(absl::ToDoubleSeconds(options.slice) +
                                           options.call_timeout_seconds);
    v1::Operation next;
    const grpc::Status s = stub->WaitOperation(context.get(), request, &next);
    if (absl::Status why = stop_reason(); !why.ok()) return why;
    if (s.ok()) {
      op = std::move(next);
      last_heard = absl::Now();
      backoff = absl::Milliseconds(250);
      if (display != nullptr) display->Update(op);
      continue;
    }
    const bool retryable = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retryable || absl::Now() - last_heard > options.reconnect_for) {
      return connection.ToStatus(s);
    }
    // Wait before retrying, still answering interrupts and health checks.
    const absl::Time resume = absl::Now() + backoff;
    while (absl::Now() < resume) {
      if (absl::Status why = stop_reason(); !why.ok()) return why;
      absl::SleepFor(std::min(kPollInterval, resume - absl::Now()));
    }
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  return op;
}

absl::Status OperationOutcome(const v1::Operation& op) {
  if (!op.done()) {
    return absl::InternalError(absl::StrCat("operation ", op.name(), " is not done"));
  }
  if (!op.has_error() || op.error().code() == 0) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(op.error().code());
  return JobEndedError(absl::StatusCodeToString(code),
                       absl::StrCat("operation ", op.name(), " failed: ",
                                    op.error().message()));
}

void CancelOperationQuietly(const Connection& connection, const std::string& name) {
  auto stub = v1::Operations::NewStub(connection.channel());
  v1::CancelOperationRequest request;
  request.set_name(name);
  google::protobuf::Empty empty;
  auto context = connection.UnaryContext(kCancelTimeoutSeconds);
  (void)stub->CancelOperation(context.get(), request, &empty);
}

}  // namespace qcal::client
