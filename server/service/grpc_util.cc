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
  if (role == Role::kClient && !worker_token_.empty() && ConstantTimeEquals(token, worker_token_)) {
    return grpc::Status::OK;
  }
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

}  // namespace qcal::server
