#include "worker/service/coordinator_client.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/worker.grpc.pb.h"

namespace qcal {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", flag, " ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Reports go in chunks of about this many bytes (the server's message limit is
// larger; smaller chunks keep both sides' peak memory low).
constexpr size_t kChunkBytes = 2u << 20;

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, std::string token)
      : stub_(v1::WorkerService::NewStub(channel)), token_(std::move(token)) {}

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& r) override {
    return Unary(&v1::WorkerService::Stub::RegisterWorker, r, v1::RegisterWorkerResponse(), 10);
  }
  absl::StatusOr<v1::LeaseTaskResponse> Lease(const v1::LeaseTaskRequest& r) override {
    return Unary(&v1::WorkerService::Stub::LeaseTask, r, v1::LeaseTaskResponse(), 30);
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) override {
    return Unary(&v1::WorkerService::Stub::Heartbeat, r, v1::HeartbeatResponse(), 10);
  }
  absl::Status Fail(const v1::FailTaskRequest& r) override {
    return Unary(&v1::WorkerService::Stub::FailTask, r, google::protobuf::Empty(), 10).status();
  }

  absl::Status Complete(const TaskReport& report) override {
    grpc::ClientContext ctx;
    Prepare(ctx, 300);
    v1::CompleteTaskResponse resp;
    auto writer = stub_->CompleteTask(&ctx, &resp);
    v1::CompleteTaskChunk chunk;
    *chunk.mutable_header() = report.header;
    if (report.result != nullptr) chunk.mutable_result()->PackFrom(*report.result);
    bool ok = true;
    for (const auto& l : report.stats.linears()) {
      *chunk.add_linears() = l;
      if (chunk.ByteSizeLong() > kChunkBytes) {
        ok = ok && writer->Write(chunk);
        chunk.Clear();
      }
    }
    if (chunk.has_header() || chunk.linears_size() > 0) ok = ok && writer->Write(chunk);
    writer->WritesDone();
    return FromGrpc(writer->Finish());  // a failed Write shows in Finish's status
  }

  absl::StatusOr<TaskStats> ReadTaskStats(const v1::GetTaskStatsRequest& r) override {
    grpc::ClientContext ctx;
    Prepare(ctx, 600);
    auto reader = stub_->GetTaskStats(&ctx, r);
    TaskStats out;
    v1::JobStatsChunk chunk;
    while (reader->Read(&chunk)) {
      if (!chunk.job_id().empty()) out.tokens = chunk.tokens();
      for (auto& l : *chunk.mutable_linears()) *out.stats.add_linears() = std::move(l);
    }
    grpc::Status gs = reader->Finish();
    if (!gs.ok()) return FromGrpc(gs);
    return out;
  }

 private:
  void Prepare(grpc::ClientContext& ctx, int timeout_s) {
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  }

  template <typename Method, typename Req, typename Resp>
  absl::StatusOr<Resp> Unary(Method method, const Req& req, Resp resp, int timeout_s) {
    grpc::ClientContext ctx;
    Prepare(ctx, timeout_s);
    grpc::Status gs = ((*stub_).*method)(&ctx, req, &resp);
    if (!gs.ok()) return FromGrpc(gs);
    return resp;
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const std::string token_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorClient>> ConnectToCoordinator(
    const CoordinatorAddress& address) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!address.tls_ca.empty()) {
    auto pem = ReadFile(address.tls_ca, "--tls-ca");
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *pem;
    creds = grpc::SslCredentials(ssl);
  }
  std::string token;
  if (!address.token_file.empty()) {
    auto t = ReadFile(address.token_file, "--token-file");
    if (!t.ok()) return t.status();
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  // gRPC's default reconnect backoff grows to 120 s: after a coordinator restart a
  // worker could sit idle for minutes while holding a report. The coordinator is
  // one known peer, so retry it every few seconds at most.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 3000);
  return std::unique_ptr<CoordinatorClient>(new GrpcCoordinatorClient(
      grpc::CreateCustomChannel(address.target, creds, args), std::move(token)));
}

}  // namespace qcal
