#include "server/service/rpc_metrics.h"

#include <chrono>
#include <string>

#include "absl/status/status.h"

namespace qcal::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

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
