// The qcal-coordinator under test, as a child process of the load test, and the
// signal handler that kills it when the load test is interrupted. Started with the
// project's one launcher (client/process.h): own process group, log file, and
// PR_SET_PDEATHSIG, so a load test killed outright does not leave it running.
//
// Threading: one thread (the main one, see below) starts, stops and destroys a
// CoordinatorProcess; its accessors may be read from any thread meanwhile. At most
// one coordinator runs at a time: the signal handler knows a single pid. Errors:
// Start returns a Status; Stop reports an unclean exit as false, with LogTail to
// show why.
#ifndef QCAL_BENCH_LOAD_COORDINATOR_PROCESS_H_
#define QCAL_BENCH_LOAD_COORDINATOR_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/load/common.h"
#include "client/process.h"

namespace qcal::bench {

// A qcal-coordinator child on 127.0.0.1:0 with its own database; SIGKILLed when
// destroyed if still running. Start it from the main thread: PR_SET_PDEATHSIG fires
// when the thread that forked ends, not the process. While one runs,
// KillCoordinatorAndExit kills it.
class CoordinatorProcess {
 public:
  // Starts flags.coordinator_bin with its database, port file and log
  // (coordinator.log, appended to) in `dir` (created), `data_roots` as --data-root,
  // and /metrics on 127.0.0.1:metrics_port when metrics_port > 0. Returns once it
  // has written its port file. Errors: it cannot be started, it exited at start
  // (the message holds its log's tail), or it did not serve within 60 s.
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      const Flags& flags, const std::string& dir, const std::vector<std::string>& data_roots,
      int metrics_port);

  ~CoordinatorProcess();
  CoordinatorProcess(const CoordinatorProcess&) = delete;
  CoordinatorProcess& operator=(const CoordinatorProcess&) = delete;

  // SIGTERM (graceful stop), SIGKILL after 20 s. True when it exited with status 0.
  bool Stop();

  pid_t pid() const { return child_->pid(); }
  // host:port it serves gRPC on.
  const std::string& address() const { return address_; }
  int metrics_port() const { return metrics_port_; }
  // The last 3000 characters of its log.
  std::string LogTail() const;

 private:
  CoordinatorProcess(std::unique_ptr<client::ChildProcess> child, std::string log,
                     int metrics_port);
  // Whether it still runs; once it has ended, forgets its pid for the signal handler.
  bool Running();

  const std::unique_ptr<client::ChildProcess> child_;
  const std::string log_;
  const int metrics_port_;
  std::string address_;
};

// Sets the message KillCoordinatorAndExit writes to stderr (cut at 1 KiB). Call it
// before installing the handler.
void SetInterruptNote(const std::string& note);

// A signal handler (async-signal-safe): SIGKILLs the running coordinator, if any,
// writes the interrupt note and exits with status 128 + sig.
void KillCoordinatorAndExit(int sig);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_LOAD_COORDINATOR_PROCESS_H_
