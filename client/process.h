// Child processes: spawning, watching and stopping them (SIGTERM, a grace period,
// then SIGKILL). The one launcher of the project: `qcal run` starts the coordinator
// and workers with it, the end-to-end tests (tests/test_cluster.h) and the load
// test (bench/load/) their clusters. Libtorch-free.
//
// A child gets its own process group (so a Ctrl-C at the terminal reaches only
// qcal, which then stops the children in order), stdin from /dev/null (or a file),
// stdout and stderr into a log file, default signal dispositions, and
// PR_SET_PDEATHSIG=SIGTERM so it does not outlive a parent that was killed outright.
//
// Thread-safety: ChildProcess methods may be called from several threads.
#ifndef QCAL_CLIENT_PROCESS_H_
#define QCAL_CLIENT_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qcal::client {

struct SpawnOptions {
  // argv[0] is the executable's path (not searched in $PATH).
  std::vector<std::string> argv;
  // File (created or truncated) receiving stdout and stderr; empty: inherit ours.
  std::string log_file;
  // Append to log_file instead of truncating it (a process restarted on one log).
  bool append_log = false;
  // When set, stderr goes here (created or truncated) instead of log_file.
  std::string stderr_file;
  // File read as stdin; empty: /dev/null.
  std::string stdin_file;
};

class ChildProcess {
 public:
  // Starts the program. Errors: the log file cannot be created, fork fails, or
  // exec fails (e.g. "cannot execute /x/qcal-worker: Permission denied").
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const SpawnOptions& options);

  // Stops the child (grace 10 s) if it still runs.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Basename of argv[0], for messages.
  const std::string& name() const { return name_; }
  const std::string& log_file() const { return log_file_; }

  // Whether it still runs; reaps it (without blocking) once it has exited.
  bool Running();
  // "exited with status 1", "killed by signal 9 (Killed)"; "running" while running.
  std::string ExitDescription();
  // Sends `signo` and waits up to `timeout` for the child to end; then SIGKILLs and
  // reaps it. Returns whether it ended within the timeout.
  bool Kill(int signo, absl::Duration timeout);
  // The waitpid status once it has exited (reaping it if it just did).
  std::optional<int> WaitStatus();

 private:
  friend void StopAll(const std::vector<ChildProcess*>& children, absl::Duration grace,
                      const std::function<bool()>& hurry);
  ChildProcess(pid_t pid, std::string name, std::string log_file)
      : pid_(pid), name_(std::move(name)), log_file_(std::move(log_file)) {}
  // Reaps without blocking; true when it has exited (now or before).
  bool ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Signal(int signo);

  const pid_t pid_;
  const std::string name_;
  const std::string log_file_;
  absl::Mutex mu_;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  int wait_status_ ABSL_GUARDED_BY(mu_) = 0;
};

// Sends SIGTERM to every running child, waits up to `grace` for all of them, then
// SIGKILLs and reaps those left. `hurry` (may be empty) is polled while waiting: when
// it returns true (e.g. a second Ctrl-C) the rest are killed at once.
void StopAll(const std::vector<ChildProcess*>& children, absl::Duration grace,
             const std::function<bool()>& hurry = {});

// Runs a program to its end and returns its waitpid status; DEADLINE_EXCEEDED
// (after killing it) when it runs longer than `timeout`.
absl::StatusOr<int> RunToCompletion(const SpawnOptions& options, absl::Duration timeout);

// The absolute path of the running executable (/proc/self/exe).
absl::StatusOr<std::string> SelfExecutablePath();

// The executable to run for `name` (e.g. "qcal-coordinator"): `override_path` when
// given (a usage error unless it is an executable file), else the first executable
// among `search_dirs`/name, else `name` found in $PATH. NOT_FOUND names the places
// searched and `flag`, the override flag.
absl::StatusOr<std::string> FindExecutable(const std::string& name,
                                           const std::string& override_path,
                                           const std::vector<std::string>& search_dirs,
                                           const std::string& flag);

// The last non-empty line of a text file (at most its last 4 KiB are read); empty
// when there is none.
std::string LastLogLine(const std::string& path);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_PROCESS_H_
