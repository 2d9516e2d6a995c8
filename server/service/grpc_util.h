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

// Bearer tokens: the client API (CalibrationService, Operations) takes only the
// client token and the worker API (WorkerService) only the worker token; neither
// opens the other. An empty token leaves that API open. Tokens are compared in
// constant time.
class Auth {
 public:
  enum class Role { kClient, kWorker };
  Auth(std::string client_token, std::string worker_token)
      : client_token_(std::move(client_token)), worker_token_(std::move(worker_token)) {}
  bool enabled() const { return !client_token_.empty() || !worker_token_.empty(); }
  // Whether `role`'s API answers without a token.
  bool open(Role role) const {
    return (role == Role::kClient ? client_token_ : worker_token_).empty();
  }
  // OK, or UNAUTHENTICATED naming what is wrong ("missing" or "wrong" token).
  grpc::Status Check(const grpc::ServerContextBase& context, Role role) const;

 private:
  std::string client_token_;
  std::string worker_token_;
};

// The coordinator's Auth from its flags. Auth is on for both APIs or for neither:
// one token file alone is refused (INVALID_ARGUMENT naming the open side) unless
// `unauthenticated_api` ("client" or "worker") names the other API, which then runs
// open on purpose. Naming an API whose token file is given is refused too. Token
// files: see ReadTokenFile.
absl::StatusOr<Auth> LoadAuth(const std::string& client_token_file,
                              const std::string& worker_token_file,
                              const std::string& unauthenticated_api);

// Reads a token file (trailing whitespace stripped). INVALID_ARGUMENT if empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace qcal::server

#endif  // QCAL_SERVER_SERVICE_GRPC_UTIL_H_
