// The client's connection to a coordinator: one gRPC channel (insecure, or TLS with
// a given root CA), the bearer token sent on every call, and the deadline of unary
// calls.
//
// The token goes into each call's metadata (`authorization: Bearer <token>`) rather
// than into channel call credentials, so it is sent on insecure loopback channels
// too (gRPC refuses call credentials without TLS).
//
// Thread-safety: a Connection is immutable after Create; contexts may be made from
// any thread.
#ifndef QCAL_CLIENT_CONNECTION_H_
#define QCAL_CLIENT_CONNECTION_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace qcal::client {

inline constexpr char kDefaultServer[] = "127.0.0.1:7070";

struct ConnectionOptions {
  // host:port of the coordinator (any gRPC target string).
  std::string server = kDefaultServer;
  // File holding the bearer token (surrounding whitespace ignored); empty = no token.
  std::string token_file;
  // PEM root certificate(s) to verify the server with; empty = insecure channel.
  std::string tls_ca_file;
  // Deadline of each unary call, seconds (> 0). Streams have none.
  double timeout_seconds = 30;
};

class Connection {
 public:
  // Reads the token and CA files and makes the channel (no network traffic yet).
  // A missing, unreadable or empty file is a usage error (see exit_codes.h).
  static absl::StatusOr<std::unique_ptr<Connection>> Create(
      const ConnectionOptions& options);

  // A context for one unary call: token metadata and the unary deadline.
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;
  // A context for a unary call with its own deadline (e.g. a long wait).
  std::unique_ptr<grpc::ClientContext> UnaryContext(double timeout_seconds) const;
  // A context for a stream: token metadata, no deadline.
  std::unique_ptr<grpc::ClientContext> StreamContext() const;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& target() const { return target_; }

  // `status` as an absl::Status. UNAVAILABLE and DEADLINE_EXCEEDED messages name the
  // server ("cannot reach 127.0.0.1:7070: ...").
  absl::Status ToStatus(const grpc::Status& status) const;

 private:
  Connection(std::shared_ptr<grpc::Channel> channel, std::string target,
             std::string token, double timeout_seconds)
      : channel_(std::move(channel)),
        target_(std::move(target)),
        token_(std::move(token)),
        timeout_seconds_(timeout_seconds) {}

  std::shared_ptr<grpc::Channel> channel_;
  std::string target_;
  std::string token_;  // empty: no authorization metadata
  double timeout_seconds_;
};

// Reads a whole small file (token, CA); errors name the file and the flag.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view flag);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_CONNECTION_H_
