// The one place that turns internal statuses into gRPC statuses, and bearer-token
// authentication shared by every service.
#ifndef QCAL_SERVER_SERVICE_GRPC_UTIL_H_
#define QCAL_SERVER_SERVICE_GRPC_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace qcal::server {

// Same code; the message capped at 2 KB so a huge error never becomes a huge trailer.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Bearer tokens: clients and workers have separate tokens. An empty token disables
// the check for that side (auth off for it); run with both for auth on. Tokens are compared in constant time.
class Auth {
 public:
  enum class Role { kClient, kWorker };
  Auth(std::string client_token, std::string worker_token)
      : client_token_(std::move(client_token)), worker_token_(std::move(worker_token)) {}
  bool enabled() const { return !client_token_.empty() || !worker_token_.empty(); }
  // OK, or UNAUTHENTICATED naming what is wrong ("missing" or "wrong" token). The
  // worker token is accepted for client calls too (the embedded runner uses one).
  grpc::Status Check(const grpc::ServerContextBase& context, Role role) const;

 private:
  std::string client_token_;
  std::string worker_token_;
};

// Reads a token file (trailing whitespace stripped). INVALID_ARGUMENT if empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace qcal::server

#endif  // QCAL_SERVER_SERVICE_GRPC_UTIL_H_
