#include "server/service/grpc_util.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qcal::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string msg(status.message().substr(0, 2048));
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), msg);
}

namespace {

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

grpc::Status Auth::Check(const grpc::ServerContextBase& context, Role role) const {
  const std::string& need = role == Role::kClient ? client_token_ : worker_token_;
  if (need.empty()) return grpc::Status::OK;  // this side's auth is off
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token (authorization metadata)");
  }
  const std::string value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, "Bearer ")) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata is not \"Bearer <token>\"");
  }
  const std::string token = value.substr(7);
  if (ConstantTimeEquals(token, need)) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      role == Role::kClient ? "wrong client token" : "wrong worker token");
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  std::string t(absl::StripAsciiWhitespace(ss.str()));
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  return t;
}

absl::StatusOr<Auth> LoadAuth(const std::string& client_token_file,
                              const std::string& worker_token_file,
                              const std::string& unauthenticated_api) {
  const bool client = !client_token_file.empty(), worker = !worker_token_file.empty();
  if (!unauthenticated_api.empty()) {
    if (unauthenticated_api != "client" && unauthenticated_api != "worker") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--unauthenticated-api is \"client\" or \"worker\", not \"", unauthenticated_api, "\""));
    }
    if ((unauthenticated_api == "client" && client) || (unauthenticated_api == "worker" && worker)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--unauthenticated-api ", unauthenticated_api, " contradicts --", unauthenticated_api,
          "-token-file: give one or the other"));
    }
    if (!client && !worker) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--unauthenticated-api ", unauthenticated_api,
          " without the other API's token file: auth is off for both APIs anyway"));
    }
  } else if (client != worker) {
    const char* given = client ? "client" : "worker";
    const char* open = client ? "worker" : "client";
    return absl::InvalidArgumentError(absl::StrCat(
        "--", given, "-token-file without --", open, "-token-file would leave the ", open,
        " API open to anyone who can connect; give both token files, or add "
        "--unauthenticated-api ", open, " to run it open on purpose"));
  }
  std::string client_token, worker_token;
  if (client) {
    absl::StatusOr<std::string> t = ReadTokenFile(client_token_file);
    if (!t.ok()) return t.status();
    client_token = *std::move(t);
  }
  if (worker) {
    absl::StatusOr<std::string> t = ReadTokenFile(worker_token_file);
    if (!t.ok()) return t.status();
    worker_token = *std::move(t);
  }
  if (client && worker && client_token == worker_token) {
    return absl::InvalidArgumentError(
        "the client and worker token files hold the same token: the roles would not be "
        "separate; give each its own token");
  }
  return Auth(std::move(client_token), std::move(worker_token));
}

}  // namespace qcal::server
