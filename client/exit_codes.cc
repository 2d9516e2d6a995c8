#include "client/exit_codes.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace qcal::client {
namespace {

constexpr char kUsageUrl[] = "type.qcal.dev/cli.usage";
constexpr char kJobEndedUrl[] = "type.qcal.dev/cli.job_ended";
constexpr char kInterruptedUrl[] = "type.qcal.dev/cli.interrupted";
// Longest message printed; gRPC messages can embed whole debug strings.
constexpr size_t kMaxMessageChars = 2000;

absl::Status WithPayload(absl::Status status, absl::string_view url,
                         absl::string_view value) {
  status.SetPayload(url, absl::Cord(value));
  return status;
}

std::string OneLine(absl::string_view message) {
  std::string out;
  out.reserve(std::min(message.size(), kMaxMessageChars + 3));
  bool last_space = false;
  for (char c : message) {
    const bool space = c == '\n' || c == '\r' || c == '\t';
    if (space) {
      if (!last_space && !out.empty()) out.push_back(' ');
      last_space = true;
      continue;
    }
    last_space = false;
    out.push_back(c);
    if (out.size() >= kMaxMessageChars) {
      out += "...";
      break;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

int ExitCodeForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return kExitRefused;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
      return kExitUnavailable;
    case absl::StatusCode::kUnauthenticated:
      return kExitUnauthenticated;
    default:
      return kExitInternal;
  }
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (status.GetPayload(kUsageUrl).has_value()) return kExitUsage;
  if (status.GetPayload(kJobEndedUrl).has_value()) return kExitJobEnded;
  if (status.GetPayload(kInterruptedUrl).has_value()) return kExitInterrupted;
  return ExitCodeForCode(status.code());
}

absl::Status UsageError(absl::string_view message) {
  return WithPayload(absl::InvalidArgumentError(message), kUsageUrl, "");
}

absl::Status JobEndedError(absl::string_view state_name, absl::string_view message) {
  return WithPayload(absl::AbortedError(message), kJobEndedUrl, state_name);
}

absl::Status InterruptedError(absl::string_view message) {
  return WithPayload(absl::CancelledError(message), kInterruptedUrl, "");
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsageUrl).has_value();
}

bool IsInterrupted(const absl::Status& status) {
  return status.GetPayload(kInterruptedUrl).has_value();
}

std::string ErrorLine(absl::string_view command, const absl::Status& status) {
  std::string name = absl::StatusCodeToString(status.code());
  if (auto state = status.GetPayload(kJobEndedUrl); state.has_value()) {
    name = std::string(*state);
  }
  std::string message = OneLine(status.message());
  if (message.empty()) message = "(no message)";
  if (command.empty()) return absl::StrCat("qcal: ", name, ": ", message);
  return absl::StrCat("qcal: ", command, ": ", name, ": ", message);
}

}  // namespace qcal::client
