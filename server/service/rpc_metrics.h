// Latency and result code of every RPC the coordinator serves, recorded by one gRPC
// server interceptor (so no handler can forget it, and health checks and
// reflection count too): qcal_rpc_duration_seconds{method, code} (a histogram from
// the call's arrival to its end, streams included) in the Metrics registry. It is
// also the one place where a failure without a message gets one: no client ever
// sees an empty-message status (a request gRPC cannot parse becomes
// INVALID_ARGUMENT naming the method).
#ifndef QCAL_SERVER_SERVICE_RPC_METRICS_H_
#define QCAL_SERVER_SERVICE_RPC_METRICS_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics/metrics.h"

namespace qcal::server {

// Add to grpc::ServerBuilder::experimental().SetInterceptorCreators. `metrics` must
// outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetricsInterceptor(
    Metrics* metrics);

}  // namespace qcal::server

#endif  // QCAL_SERVER_SERVICE_RPC_METRICS_H_
