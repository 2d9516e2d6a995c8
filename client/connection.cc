#include "client/connection.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/exit_codes.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace qcal::client {
namespace {

// Statistics chunks of large models can be big; never fail a download on size.
constexpr int kMaxReceiveBytes = 512 << 20;
constexpr size_t kMaxSmallFileBytes = 1 << 20;

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

}  // namespace

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return UsageError(absl::StrCat(flag, " ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return UsageError(absl::StrCat(flag, " ", path, ": read error"));
  std::string text = content.str();
  if (text.size() > kMaxSmallFileBytes) {
    return UsageError(absl::StrCat(flag, " ", path, ": larger than 1 MiB"));
  }
  return text;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(
    const ConnectionOptions& options) {
  if (options.server.empty()) return UsageError("--server must not be empty");
  if (!(options.timeout_seconds > 0) || !std::isfinite(options.timeout_seconds)) {
    return UsageError("--timeout must be a positive number of seconds");
  }
  std::string token;
  if (!options.token_file.empty()) {
    auto text = ReadSmallFile(options.token_file, "--token-file");
    if (!text.ok()) return text.status();
    token = std::string(absl::StripAsciiWhitespace(*text));
    if (token.empty()) {
      return UsageError(absl::StrCat("--token-file ", options.token_file, " is empty"));
    }
    for (char c : token) {
      if (c < 0x20 || c == 0x7f) {
        return UsageError(absl::StrCat("--token-file ", options.token_file,
                                       ": the token holds a control character"));
      }
    }
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    auto pem = ReadSmallFile(options.tls_ca_file, "--tls-ca");
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  auto channel = grpc::CreateCustomChannel(options.server, credentials, args);
  return std::unique_ptr<Connection>(new Connection(
      std::move(channel), options.server, std::move(token), options.timeout_seconds));
}

std::unique_ptr<grpc::ClientContext> Connection::UnaryContext() const {
  return UnaryContext(timeout_seconds_);
}

std::unique_ptr<grpc::ClientContext> Connection::UnaryContext(
    double timeout_seconds) const {
  auto context = StreamContext();
  context->set_deadline(DeadlineIn(timeout_seconds));
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::StreamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  return context;
}

absl::Status Connection::ToStatus(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  std::string message = status.error_message();
  if (code == absl::StatusCode::kUnavailable) {
    message = absl::StrCat("cannot reach ", target_, ": ", message);
  } else if (code == absl::StatusCode::kDeadlineExceeded) {
    message = absl::StrCat("no answer from ", target_, " in time: ", message);
  }
  return absl::Status(code, message);
}

}  // namespace qcal::client
