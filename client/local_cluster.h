// A coordinator and N workers on loopback, for `qcal run`.
//
// Start() makes a private working folder (mkdtemp), starts
//   qcal-coordinator --listen 127.0.0.1:0 --db DB --data-root R...
//                    --port-file WORK/coordinator.port --metrics-listen ""
// waits until the coordinator has written the address it bound to the port file
// (it does so once it serves), then starts N times
//   qcal-worker --coordinator HOST:PORT --name local-I [--threads T]
// Every child logs into LOG_DIR/coordinator.log, LOG_DIR/worker-I.log.
//
// Stop() (also run by the destructor) stops the workers, then the coordinator
// (SIGTERM, up to 10 s, SIGKILL) and removes the working folder; a temporary
// database lives in it and goes with it, a given --db is kept.
//
// Interrupts (interrupt.h): a signal while starting ends Start() with
// InterruptedError; a further signal while stopping kills at once.
#ifndef QCAL_CLIENT_LOCAL_CLUSTER_H_
#define QCAL_CLIENT_LOCAL_CLUSTER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/process.h"

namespace qcal::client {

struct LocalClusterOptions {
  std::string coordinator_bin;
  std::string worker_bin;
  // RocksDB folder; empty: a temporary one, removed by Stop().
  std::string db_dir;
  // --data-root of the coordinator (absolute folders).
  std::vector<std::string> data_roots;
  // --output-root of the coordinator (exports); empty: none.
  std::string output_root;
  int workers = 2;      // >= 1
  int threads = 0;      // worker --threads; 0: the worker's default
  std::string log_dir;  // must exist
  // How long the coordinator may take to write its port file.
  absl::Duration start_timeout = absl::Seconds(30);
  // How long each child gets between SIGTERM and SIGKILL.
  absl::Duration stop_grace = absl::Seconds(10);
};

class LocalCluster {
 public:
  // Errors: UNAVAILABLE when the coordinator exits or does not write its port file
  // in time (the message quotes the last line of its log and names the log), the
  // spawn errors of ChildProcess, InterruptedError. Whatever started is stopped.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);

  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // host:port the coordinator serves on.
  const std::string& address() const { return address_; }
  const std::string& db_dir() const { return db_dir_; }

  // OK while the coordinator and at least one worker run; otherwise UNAVAILABLE
  // saying who exited, how, the last line of its log and where the log is.
  // Callable from any thread.
  absl::Status Health() const;

  // Stops everything and removes the working folder. Idempotent.
  void Stop();

 private:
  explicit LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}
  absl::Status StartCoordinator();
  absl::Status StartWorkers();

  LocalClusterOptions options_;
  std::string work_dir_;
  std::string db_dir_;
  std::string address_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  bool stopped_ = false;
};

// UNAVAILABLE "<name> (pid P) <exit description>: <last log line> (log: FILE)".
absl::Status ChildExitedError(ChildProcess& child, const std::string& when);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_LOCAL_CLUSTER_H_
