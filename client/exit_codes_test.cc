#include "client/exit_codes.h"

#include <string>

#include "gtest/gtest.h"

namespace qcal::client {
namespace {

TEST(ExitCodesTest, EveryStatusCodeHasItsDocumentedExitCode) {
  using C = absl::StatusCode;
  const struct {
    C code;
    int exit;
  } kCases[] = {
      {C::kOk, 0},
      {C::kCancelled, 1},
      {C::kUnknown, 1},
      {C::kInvalidArgument, 5},
      {C::kDeadlineExceeded, 6},
      {C::kNotFound, 4},
      {C::kAlreadyExists, 5},
      {C::kPermissionDenied, 5},
      {C::kResourceExhausted, 6},
      {C::kFailedPrecondition, 5},
      {C::kAborted, 1},
      {C::kOutOfRange, 5},
      {C::kUnimplemented, 5},
      {C::kInternal, 1},
      {C::kUnavailable, 6},
      {C::kDataLoss, 1},
      {C::kUnauthenticated, 7},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(ExitCodeForCode(c.code), c.exit) << absl::StatusCodeToString(c.code);
    EXPECT_EQ(ExitCodeFor(absl::Status(c.code, "x")), c.exit)
        << absl::StatusCodeToString(c.code);
  }
  EXPECT_EQ(ExitCodeForCode(static_cast<absl::StatusCode>(99)), 1);
}

TEST(ExitCodesTest, MarkedErrorsOverrideTheCode) {
  EXPECT_EQ(ExitCodeFor(UsageError("--seq-len must be positive")), kExitUsage);
  EXPECT_TRUE(IsUsageError(UsageError("x")));
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("x")));
  EXPECT_EQ(ExitCodeFor(JobEndedError("JOB_FAILED", "job j failed")), kExitJobEnded);
  EXPECT_EQ(ExitCodeFor(InterruptedError("interrupted")), kExitInterrupted);
  EXPECT_TRUE(IsInterrupted(InterruptedError("x")));
  EXPECT_FALSE(IsInterrupted(absl::CancelledError("x")));
}

TEST(ExitCodesTest, ErrorLineIsOneLine) {
  EXPECT_EQ(ErrorLine("status", absl::NotFoundError("job j not found")),
            "qcal: status: NOT_FOUND: job j not found");
  EXPECT_EQ(ErrorLine("", UsageError("A subcommand is required")),
            "qcal: INVALID_ARGUMENT: A subcommand is required");
  EXPECT_EQ(ErrorLine("watch", JobEndedError("JOB_FAILED", "job j failed: a\nb\r\n\tc\n")),
            "qcal: watch: JOB_FAILED: job j failed: a b c");
  EXPECT_EQ(ErrorLine("list", absl::UnknownError("")), "qcal: list: UNKNOWN: (no message)");
  const std::string huge = ErrorLine("x", absl::InternalError(std::string(100000, 'a')));
  EXPECT_LT(huge.size(), 2100u);
  EXPECT_EQ(huge.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace qcal::client
