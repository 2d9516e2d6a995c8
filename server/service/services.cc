#include "server/service/services.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/time_util.h"
#include "proto/qcal/v1/job_state.h"

namespace qcal::server {
namespace {

using Role = Auth::Role;

// Statistics streams send chunks of about this many bytes of linears.
constexpr int64_t kChunkBytes = 2 << 20;

// Runs `call` (one core call returning StatusOr<T>) for a unary RPC.
template <typename T, typename Fn>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const Auth* auth, Role role,
                                T* resp, Fn&& call) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status a = auth->Check(*ctx, role);
  if (!a.ok()) {
    reactor->Finish(a);
    return reactor;
  }
  auto r = call();
  if (r.ok()) *resp = *std::move(r);
  reactor->Finish(ToGrpcStatus(r.status()));
  return reactor;
}


// WatchJob: sends the job now and after every change (coalescing changes that arrive
// while a write is in flight), finishes when the job is final.
class WatchReactor final : public grpc::ServerWriteReactor<v1::Job> {
 public:
  WatchReactor(Coordinator* core, const Auth* auth, grpc::CallbackServerContext* ctx,
               const std::string& job_id, std::atomic<int>* watchers, int max_watchers)
      : core_(core), watchers_(watchers), shared_(std::make_shared<Shared>()) {
    shared_->reactor = this;
    grpc::Status a = auth->Check(*ctx, Role::kClient);
    if (!a.ok()) {
      Finish(a);
      return;
    }
    if (watchers_->fetch_add(1) >= max_watchers) {
      counted_ = true;
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many WatchJob streams"));
      return;
    }
    counted_ = true;
    std::shared_ptr<Shared> shared = shared_;
    auto handle = core_->Watch(job_id, [shared](const v1::Job& job) {
      absl::MutexLock lock(&shared->mu);
      if (shared->reactor != nullptr) shared->reactor->OnChangeLocked(job);
    });
    if (!handle.ok()) {
      Finish(ToGrpcStatus(handle.status()));
      return;
    }
    handle_ = *handle;
    auto job = core_->GetJob(job_id);
    absl::MutexLock lock(&shared_->mu);
    if (!job.ok()) {
      FinishLocked(ToGrpcStatus(job.status()));
      return;
    }
    OnChangeLocked(*job);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&shared_->mu);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (v1::IsFinalJobState(current_.state())) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&shared_->mu);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
    }
    if (handle_ != 0) core_->Unwatch(handle_);
    if (counted_) watchers_->fetch_sub(1);
    delete this;
  }

 private:
  struct Shared {
    absl::Mutex mu;
    WatchReactor* reactor = nullptr;
  };

  void OnChangeLocked(const v1::Job& job) {
    if (finished_ || job.version() <= queued_version_) return;
    pending_ = job;
    queued_version_ = job.version();
    has_pending_ = true;
    if (!writing_) WriteNextLocked();
  }

  void WriteNextLocked() {
    if (!has_pending_ || finished_) return;
    current_ = pending_;
    has_pending_ = false;
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  Coordinator* core_;
  std::atomic<int>* watchers_;
  bool counted_ = false;
  int64_t handle_ = 0;
  std::shared_ptr<Shared> shared_;
  v1::Job current_, pending_;
  int64_t queued_version_ = -1;
  bool has_pending_ = false, writing_ = false, finished_ = false;
};

// Streams a job's statistics as they are read: one chunk in memory at a time, the
// next read when the previous write is done.
class StatsWriter final : public grpc::ServerWriteReactor<v1::JobStatsChunk> {
 public:
  explicit StatsWriter(StatsReader reader) : reader_(std::move(reader)) { Next(); }
  explicit StatsWriter(const grpc::Status& error) { Finish(error); }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    absl::StatusOr<std::optional<v1::JobStatsChunk>> chunk = reader_->Next();
    if (!chunk.ok()) {
      Finish(ToGrpcStatus(chunk.status()));
    } else if (!chunk->has_value()) {
      Finish(grpc::Status::OK);
    } else {
      chunk_ = std::move(**chunk);
      StartWrite(&chunk_);
    }
  }
  std::optional<StatsReader> reader_;
  v1::JobStatsChunk chunk_;
};

// CompleteTask: gathers the chunks, then makes one core call.
class CompleteReactor final : public grpc::ServerReadReactor<v1::CompleteTaskChunk> {
 public:
  static constexpr int64_t kMaxReportBytes = int64_t{4} << 30;

  CompleteReactor(Coordinator* core, const Auth* auth, grpc::CallbackServerContext* ctx,
                  v1::CompleteTaskResponse* resp)
      : core_(core), resp_(resp) {
    grpc::Status a = auth->Check(*ctx, Role::kWorker);
    if (!a.ok()) {
      Finish(a);
      return;
    }
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // end of the client's stream
      if (!have_header_) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "report has no header"));
        return;
      }
      auto r = core_->CompleteTask(header_, linears_, have_result_ ? &result_ : nullptr);
      if (r.ok()) *resp_ = *r;
      Finish(ToGrpcStatus(r.status()));
      return;
    }
    if (chunk_.has_header()) {
      if (have_header_) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "report has two headers"));
        return;
      }
      header_ = chunk_.header();
      have_header_ = true;
    }
    bytes_ += static_cast<int64_t>(chunk_.ByteSizeLong());
    if (bytes_ > kMaxReportBytes) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "report larger than 4 GB"));
      return;
    }
    for (auto& l : *chunk_.mutable_linears()) linears_.push_back(std::move(l));
    if (chunk_.has_result()) {
      if (have_result_) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "report has two results"));
        return;
      }
      result_ = chunk_.result();
      have_result_ = true;
    }
    chunk_.Clear();
    StartRead(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  Coordinator* core_;
  v1::CompleteTaskResponse* resp_;
  v1::CompleteTaskChunk chunk_;
  v1::CompleteTaskHeader header_;
  bool have_header_ = false;
  google::protobuf::Any result_;
  bool have_result_ = false;
  int64_t bytes_ = 0;
  std::vector<v1::LinearStatsProto> linears_;
};

}  // namespace

// ---------------------------------------------------------------- calibration

grpc::ServerUnaryReactor* CalibrationServiceImpl::SubmitJob(grpc::CallbackServerContext* ctx,
                                                            const v1::SubmitJobRequest* req,
                                                            v1::Job* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->SubmitJob(*req); });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                         const v1::GetJobRequest* req,
                                                         v1::Job* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->GetJob(req->job_id()); });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                           const v1::ListJobsRequest* req,
                                                           v1::ListJobsResponse* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->ListJobs(*req); });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                            const v1::CancelJobRequest* req,
                                                            v1::Job* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->CancelJob(req->job_id()); });
}

grpc::ServerWriteReactor<v1::Job>* CalibrationServiceImpl::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* req) {
  return new WatchReactor(core_, auth_, ctx, req->job_id(), &watchers_, max_watchers_);
}

grpc::ServerWriteReactor<v1::JobStatsChunk>* CalibrationServiceImpl::GetJobStats(
    grpc::CallbackServerContext* ctx, const v1::GetJobStatsRequest* req) {
  grpc::Status a = auth_->Check(*ctx, Role::kClient);
  if (!a.ok()) return new StatsWriter(a);
  absl::StatusOr<StatsReader> reader = core_->OpenStats(req->job_id(), req->allow_partial(), kChunkBytes);
  if (!reader.ok()) return new StatsWriter(ToGrpcStatus(reader.status()));
  return new StatsWriter(*std::move(reader));
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Evaluate(grpc::CallbackServerContext* ctx,
                                                           const v1::EvaluateRequest* req,
                                                           v1::Operation* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->Evaluate(*req); });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Export(grpc::CallbackServerContext* ctx,
                                                         const v1::ExportRequest* req,
                                                         v1::Operation* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->Export(*req); });
}

// ---------------------------------------------------------------- workers

grpc::ServerUnaryReactor* WorkerServiceImpl::RegisterWorker(grpc::CallbackServerContext* ctx,
                                                            const v1::RegisterWorkerRequest* req,
                                                            v1::RegisterWorkerResponse* resp) {
  return Unary(ctx, auth_, Role::kWorker, resp, [&] { return core_->RegisterWorker(*req); });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::LeaseTask(grpc::CallbackServerContext* ctx,
                                                       const v1::LeaseTaskRequest* req,
                                                       v1::LeaseTaskResponse* resp) {
  return Unary(ctx, auth_, Role::kWorker, resp, [&] { return core_->LeaseTask(*req); });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* req,
                                                       v1::HeartbeatResponse* resp) {
  return Unary(ctx, auth_, Role::kWorker, resp, [&] { return core_->Heartbeat(*req); });
}

grpc::ServerReadReactor<v1::CompleteTaskChunk>* WorkerServiceImpl::CompleteTask(
    grpc::CallbackServerContext* ctx, v1::CompleteTaskResponse* resp) {
  return new CompleteReactor(core_, auth_, ctx, resp);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FailTask(grpc::CallbackServerContext* ctx,
                                                      const v1::FailTaskRequest* req,
                                                      google::protobuf::Empty* resp) {
  return Unary(ctx, auth_, Role::kWorker, resp, [&]() -> absl::StatusOr<google::protobuf::Empty> {
    absl::Status st = core_->FailTask(*req);
    if (!st.ok()) return st;
    return google::protobuf::Empty();
  });
}

grpc::ServerWriteReactor<v1::JobStatsChunk>* WorkerServiceImpl::GetTaskStats(
    grpc::CallbackServerContext* ctx, const v1::GetTaskStatsRequest* req) {
  grpc::Status a = auth_->Check(*ctx, Role::kWorker);
  if (!a.ok()) return new StatsWriter(a);
  absl::StatusOr<StatsReader> reader = core_->OpenTaskStats(*req, kChunkBytes);
  if (!reader.ok()) return new StatsWriter(ToGrpcStatus(reader.status()));
  return new StatsWriter(*std::move(reader));
}

// ---------------------------------------------------------------- operations

grpc::ServerUnaryReactor* OperationsServiceImpl::GetOperation(grpc::CallbackServerContext* ctx,
                                                              const v1::GetOperationRequest* req,
                                                              v1::Operation* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->GetOperation(req->name()); });
}

grpc::ServerUnaryReactor* OperationsServiceImpl::ListOperations(
    grpc::CallbackServerContext* ctx, const v1::ListOperationsRequest* req,
    v1::ListOperationsResponse* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&] { return core_->ListOperations(*req); });
}

grpc::ServerUnaryReactor* OperationsServiceImpl::CancelOperation(
    grpc::CallbackServerContext* ctx, const v1::CancelOperationRequest* req,
    google::protobuf::Empty* resp) {
  return Unary(ctx, auth_, Role::kClient, resp, [&]() -> absl::StatusOr<google::protobuf::Empty> {
    absl::Status st = core_->CancelOperation(req->name());
    if (!st.ok()) return st;
    return google::protobuf::Empty();
  });
}

grpc::ServerUnaryReactor* OperationsServiceImpl::WaitOperation(grpc::CallbackServerContext* ctx,
                                                               const v1::WaitOperationRequest* req,
                                                               v1::Operation* resp) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status a = auth_->Check(*ctx, Role::kClient);
  if (!a.ok()) {
    reactor->Finish(a);
    return reactor;
  }
  absl::Duration timeout = absl::Seconds(60);
  if (req->has_timeout()) {
    timeout = absl::Milliseconds(
        google::protobuf::util::TimeUtil::DurationToMilliseconds(req->timeout()));
  }
  // Waiting may take up to a minute: off gRPC's callback threads, on the one waiter.
  waiters_.Add(req->name(), absl::Now() + std::min(timeout, absl::Seconds(60)), resp, reactor);
  return reactor;
}

OperationWaiters::OperationWaiters(Coordinator* core) : core_(core) {
  thread_ = std::thread([this] { Loop(); });
}

OperationWaiters::~OperationWaiters() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  for (const Waiter& w : waiters_) {
    w.reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }
}

void OperationWaiters::Add(std::string name, absl::Time deadline, v1::Operation* resp,
                           grpc::ServerUnaryReactor* reactor) {
  // Done already (or unknown): answer at once, without a round of the waiter.
  absl::StatusOr<v1::Operation> op = core_->GetOperation(name);
  if (!op.ok() || op->done() || absl::Now() >= deadline) {
    if (op.ok()) *resp = *std::move(op);
    reactor->Finish(ToGrpcStatus(op.status()));
    return;
  }
  absl::MutexLock lock(&mu_);
  waiters_.push_back({std::move(name), deadline, resp, reactor});
}

void OperationWaiters::Loop() {
  int64_t seen = core_->OperationsVersion();
  while (true) {
    std::vector<Waiter> pending;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      pending.swap(waiters_);
    }
    absl::Time next = absl::Now() + absl::Milliseconds(200);
    std::vector<Waiter> still;
    for (Waiter& w : pending) {
      absl::StatusOr<v1::Operation> op = core_->GetOperation(w.name);
      if (!op.ok()) {
        w.reactor->Finish(ToGrpcStatus(op.status()));
      } else if (op->done() || absl::Now() >= w.deadline) {
        *w.resp = *std::move(op);
        w.reactor->Finish(grpc::Status::OK);
      } else {
        next = std::min(next, w.deadline);
        still.push_back(std::move(w));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      // Calls added meanwhile are checked on the next round, which comes at once.
      const bool added = !waiters_.empty();
      waiters_.insert(waiters_.end(), std::make_move_iterator(still.begin()),
                      std::make_move_iterator(still.end()));
      if (stop_) return;
      if (added) continue;
    }
    // New calls arrive without a version change: wake at least every 200 ms for them.
    seen = core_->AwaitOperationChange(seen, std::max(absl::ZeroDuration(), next - absl::Now()));
  }
}

}  // namespace qcal::server
