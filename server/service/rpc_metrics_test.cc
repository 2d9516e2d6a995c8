// The RPC metrics interceptor on a real in-process gRPC server with the real
// CalibrationService over an in-memory coordinator: each call is counted once
// under its method and result code.
#include "server/service/rpc_metrics.h"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "grpcpp/generic/generic_stub.h"
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

// The real CalibrationService over an in-memory coordinator on loopback, with the
// interceptor.
class RpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string root = ::testing::TempDir() + "/rpc-metrics-" + std::to_string(::getpid());
    std::filesystem::create_directories(root);
    CoordinatorOptions options;
    options.data_roots = {root};
    auto core = Coordinator::Create(&store_, options, nullptr);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    service_ = std::make_unique<CalibrationServiceImpl>(core_.get(), &auth_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(RpcMetricsInterceptor(&metrics_));
    builder.experimental().SetInterceptorCreators(std::move(creators));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // `bytes` sent as the request of `method`, bypassing the client's serializer.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), reply;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &reply, [&](grpc::Status s) {
      std::lock_guard<std::mutex> l(mu);
      status = s;
      done = true;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done; });
    return status;
  }

  InMemoryStore store_;
  Auth auth_{"", ""};
  std::unique_ptr<Coordinator> core_;
  std::unique_ptr<CalibrationServiceImpl> service_;
  Metrics metrics_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RpcMetricsTest, EveryCallIsCountedUnderItsMethodAndCode) {
  auto stub = v1::CalibrationService::NewStub(channel_);
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
  EXPECT_TRUE(Eventually([&] { return Calls(metrics_, get, "NOT_FOUND") == 3; }))
      << Calls(metrics_, get, "NOT_FOUND");
  EXPECT_TRUE(Eventually([&] { return Calls(metrics_, "/qcal.v1.CalibrationService/ListJobs", "OK") == 1; }));
  EXPECT_EQ(Calls(metrics_, get, "OK"), 0u);
}

// Issue 15, finding 8: a request gRPC cannot parse (here a string field that is not
// UTF-8, which proto3 refuses) got UNIMPLEMENTED with an empty message. Every
// failure now reaches the client with a code that says what happened and a message.
TEST_F(RpcMetricsTest, AnUnparsableRequestGetsInvalidArgumentWithAMessage) {
  v1::SubmitJobRequest r;
  r.set_request_id("AAAA");
  std::string bytes = r.SerializeAsString();
  bytes.replace(bytes.find("AAAA"), 4, "\xff\xfe\xfd\xfc");
  const std::string submit = "/qcal.v1.CalibrationService/SubmitJob";
  grpc::Status s = RawCall(submit, bytes);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_code() << " " << s.error_message();
  EXPECT_NE(s.error_message().find("could not be parsed"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find(submit), std::string::npos) << s.error_message();
  s = RawCall(submit, std::string("\x0a\xff\xff\xff\xff\x0f", 6));  // a length past the end
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_code() << " " << s.error_message();
  EXPECT_FALSE(s.error_message().empty());
  EXPECT_TRUE(Eventually([&] { return Calls(metrics_, submit, "INVALID_ARGUMENT") == 2; }));
  // Still serving.
  auto stub = v1::CalibrationService::NewStub(channel_);
  grpc::ClientContext ctx;
  v1::ListJobsResponse resp;
  EXPECT_TRUE(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
}

}  // namespace
}  // namespace qcal::server
