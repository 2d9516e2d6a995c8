// The worker's side of the WorkerService API behind one narrow interface, so that
// the worker loop (worker_loop.h) can be driven by a fake in tests.
//
// ConnectToCoordinator is the gRPC implementation: one channel (TLS when a CA is
// given), the worker token as a bearer header on every call, a deadline per call,
// reports streamed in chunks of about 2 MB and GetTaskStats read to the end.
// Statuses are the server's (or the transport's: UNAVAILABLE, DEADLINE_EXCEEDED);
// retry decisions are the loop's.
//
// Thread-safety: every method may be called from any thread (the loop heartbeats
// from a second one).
#ifndef QCAL_WORKER_SERVICE_COORDINATOR_CLIENT_H_
#define QCAL_WORKER_SERVICE_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proto/qcal/v1/worker.pb.h"

namespace qcal {

// A report: the header plus the statistics (calibrations) or the result message
// (evaluations, exports).
struct TaskReport {
  v1::CompleteTaskHeader header;
  v1::StatsSetProto stats;
  const google::protobuf::Message* result = nullptr;  // not owned; may be null
};

// An export task's input: the parent job's statistics and its token count.
struct TaskStats {
  v1::StatsSetProto stats;
  int64_t tokens = 0;
};

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& r) = 0;
  virtual absl::StatusOr<v1::LeaseTaskResponse> Lease(const v1::LeaseTaskRequest& r) = 0;
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) = 0;
  virtual absl::Status Complete(const TaskReport& report) = 0;
  virtual absl::Status Fail(const v1::FailTaskRequest& r) = 0;
  virtual absl::StatusOr<TaskStats> ReadTaskStats(const v1::GetTaskStatsRequest& r) = 0;
};

struct CoordinatorAddress {
  std::string target;      // host:port
  std::string token_file;  // bearer token (the worker token); empty = none
  std::string tls_ca;      // PEM root CA; empty = insecure channel
};

// NOT_FOUND when the token or CA file cannot be read. Connecting itself is lazy:
// an unreachable coordinator shows as UNAVAILABLE on the first call.
absl::StatusOr<std::unique_ptr<CoordinatorClient>> ConnectToCoordinator(
    const CoordinatorAddress& address);

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_COORDINATOR_CLIENT_H_
