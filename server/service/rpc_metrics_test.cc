// The RPC metrics interceptor on a real in-process gRPC server with the real
// CalibrationService over an in-memory coordinator: each call is counted once
// under its method and result code.
#include "server/service/rpc_metrics.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "server/core/coordinator.h"
#include "server/service/grpc_util.h"
#include "server/service/services.h"
#include "server/store/in_memory_store.h"

namespace qcal::server {
namespace {

// The count of qcal_rpc_duration_seconds{method, code}, 0 when absent.
uint64_t Calls(Metrics& metrics, const std::string& method, const std::string& code) {
  for (const auto& family : metrics.registry()->Collect()) {
    if (family.name != "qcal_rpc_duration_seconds") continue;
    for (const auto& m : family.metric) {
      std::string got_method, got_code;
      for (const auto& l : m.label) {
        if (l.name == "method") got_method = l.value;
        if (l.name == "code") got_code = l.value;
      }
      if (got_method == method && got_code == code) return m.histogram.sample_count;
    }
  }
  return 0;
}

// Waits for the server side to record (the interceptor ends after the reply left).
bool Eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 200 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pred();
}

TEST(RpcMetrics, EveryCallIsCountedUnderItsMethodAndCode) {
  const std::string root = ::testing::TempDir() + "/rpc-metrics-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  InMemoryStore store;
  CoordinatorOptions options;
  options.data_roots = {root};
  auto core = Coordinator::Create(&store, options, nullptr);
  ASSERT_TRUE(core.ok()) << core.status();
  Auth auth("", "");
  CalibrationServiceImpl service(core->get(), &auth);
  Metrics metrics;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(RpcMetricsInterceptor(&metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::CalibrationService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  const std::string get = "/qcal.v1.CalibrationService/GetJob";
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    v1::GetJobRequest r;
    r.set_job_id("job-missing");
    v1::Job j;
    EXPECT_EQ(stub->GetJob(&ctx, r, &j).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ListJobsRequest r;
    v1::ListJobsResponse resp;
    EXPECT_TRUE(stub->ListJobs(&ctx, r, &resp).ok());
  }
  EXPECT_TRUE(Eventually([&] { return Calls(metrics, get, "NOT_FOUND") == 3; }))
      << Calls(metrics, get, "NOT_FOUND");
  EXPECT_TRUE(Eventually([&] { return Calls(metrics, "/qcal.v1.CalibrationService/ListJobs", "OK") == 1; }));
  EXPECT_EQ(Calls(metrics, get, "OK"), 0u);
  server->Shutdown();
}

}  // namespace
}  // namespace qcal::server
