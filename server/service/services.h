// The gRPC services of qcal-coordinator, on gRPC's callback API. Handlers are thin
// (STYLE.md): check auth, make ONE call into the Coordinator, convert the status.
// No scheduling or storage logic lives here.
#ifndef QCAL_SERVER_SERVICE_SERVICES_H_
#define QCAL_SERVER_SERVICE_SERVICES_H_

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/operations.grpc.pb.h"
#include "proto/qcal/v1/worker.grpc.pb.h"
#include "server/core/coordinator.h"
#include "server/service/grpc_util.h"

namespace qcal::server {

class CalibrationServiceImpl final : public v1::CalibrationService::CallbackService {
 public:
  // Neither pointer is owned; both outlive the service. `max_watchers` bounds
  // concurrent WatchJob streams (RESOURCE_EXHAUSTED beyond).
  CalibrationServiceImpl(Coordinator* core, const Auth* auth, int max_watchers = 10000)
      : core_(core), auth_(auth), max_watchers_(max_watchers) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitJobRequest* req, v1::Job* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* req, v1::Job* resp) override;
  grpc::ServerWriteReactor<v1::Job>* WatchJob(grpc::CallbackServerContext* ctx,
                                              const v1::WatchJobRequest* req) override;
  grpc::ServerWriteReactor<v1::JobStatsChunk>* GetJobStats(
      grpc::CallbackServerContext* ctx, const v1::GetJobStatsRequest* req) override;
  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* req, v1::Operation* resp) override;
  grpc::ServerUnaryReactor* Export(grpc::CallbackServerContext* ctx,
                                   const v1::ExportRequest* req, v1::Operation* resp) override;

 private:
  Coordinator* core_;
  const Auth* auth_;
  const int max_watchers_;
  std::atomic<int> watchers_{0};
};

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Coordinator* core, const Auth* auth) : core_(core), auth_(auth) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* ctx,
                                           const v1::RegisterWorkerRequest* req,
                                           v1::RegisterWorkerResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseTask(grpc::CallbackServerContext* ctx,
                                      const v1::LeaseTaskRequest* req,
                                      v1::LeaseTaskResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerReadReactor<v1::CompleteTaskChunk>* CompleteTask(
      grpc::CallbackServerContext* ctx, v1::CompleteTaskResponse* resp) override;
  grpc::ServerUnaryReactor* FailTask(grpc::CallbackServerContext* ctx,
                                     const v1::FailTaskRequest* req,
                                     google::protobuf::Empty* resp) override;
  grpc::ServerWriteReactor<v1::JobStatsChunk>* GetTaskStats(
      grpc::CallbackServerContext* ctx, const v1::GetTaskStatsRequest* req) override;

 private:
  Coordinator* core_;
  const Auth* auth_;
};

// Every pending WaitOperation on one thread: it wakes when any operation changes
// (Coordinator::AwaitOperationChange) or the nearest deadline passes, and finishes
// the calls whose operation is done or whose time is up. Bounded: one thread
// however many clients wait. Destroying it finishes the calls still waiting with
// UNAVAILABLE.
class OperationWaiters {
 public:
  explicit OperationWaiters(Coordinator* core);
  ~OperationWaiters();
  OperationWaiters(const OperationWaiters&) = delete;
  OperationWaiters& operator=(const OperationWaiters&) = delete;

  // Finishes `reactor` with the operation (written to `*resp`) once it is done or at
  // `deadline`, or with GetOperation's error.
  void Add(std::string name, absl::Time deadline, v1::Operation* resp,
           grpc::ServerUnaryReactor* reactor);

 private:
  struct Waiter {
    std::string name;
    absl::Time deadline;
    v1::Operation* resp;
    grpc::ServerUnaryReactor* reactor;
  };
  void Loop();

  Coordinator* const core_;
  absl::Mutex mu_;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class OperationsServiceImpl final : public v1::Operations::CallbackService {
 public:
  OperationsServiceImpl(Coordinator* core, const Auth* auth)
      : core_(core), auth_(auth), waiters_(core) {}

  grpc::ServerUnaryReactor* GetOperation(grpc::CallbackServerContext* ctx,
                                         const v1::GetOperationRequest* req,
                                         v1::Operation* resp) override;
  grpc::ServerUnaryReactor* ListOperations(grpc::CallbackServerContext* ctx,
                                           const v1::ListOperationsRequest* req,
                                           v1::ListOperationsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelOperation(grpc::CallbackServerContext* ctx,
                                            const v1::CancelOperationRequest* req,
                                            google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* WaitOperation(grpc::CallbackServerContext* ctx,
                                          const v1::WaitOperationRequest* req,
                                          v1::Operation* resp) override;

 private:
  Coordinator* core_;
  const Auth* auth_;
  OperationWaiters waiters_;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_SERVICE_SERVICES_H_
