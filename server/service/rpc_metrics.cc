#include "server/service/rpc_metrics.h"

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qcal::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Our handlers always give a message (ToGrpcStatus); an empty one comes from gRPC
// itself. For a qcal method, UNIMPLEMENTED without a message is what gRPC 1.51's
// callback API sends when the request does not parse (malformed bytes, or a proto3
// string field that is not UTF-8): that is the client's error, INVALID_ARGUMENT.
grpc::Status WithMessage(const grpc::Status& status, const std::string& method) {
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
      method.rfind("/qcal.v1.", 0) == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("the request to ", method,
                                     " could not be parsed: not a valid protocol buffer of its "
                                     "type, or a string field that is not valid UTF-8"));
  }
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  return grpc::Status(status.error_code(),
                      absl::StrCat(absl::StatusCodeToString(code), " from ", method,
                                   " (gRPC gave no detail)"));
}

// One per RPC: created when it arrives, destroyed when it is done.
class RpcMetricsRecorder final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsRecorder(Metrics* metrics, const char* method)
      : metrics_(metrics), method_(method != nullptr ? method : "unknown"),
        start_(std::chrono::steady_clock::now()) {}

  ~RpcMetricsRecorder() override {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    metrics_->Rpc(method_, absl::StatusCodeToString(static_cast<absl::StatusCode>(code_)), seconds);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status sent = methods->GetSendStatus();
      if (!sent.ok() && sent.error_message().empty()) {
        methods->ModifySendStatus(WithMessage(sent, method_));
      }
      code_ = methods->GetSendStatus().error_code();
    }
    methods->Proceed();
  }

 private:
  Metrics* const metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  // A call the client abandoned before a status was sent counts as CANCELLED.
  int code_ = grpc::StatusCode::CANCELLED;
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsRecorder(metrics_, info->method());
  }

 private:
  Metrics* const metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetricsInterceptor(
    Metrics* metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace qcal::server
