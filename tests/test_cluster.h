// Real processes for end-to-end tests: qcal-coordinator and qcal-worker started as
// children on loopback, killed with any signal, restarted on the same database and
// port. Binaries come from the build (QCAL_COORDINATOR_BIN, QCAL_WORKER_BIN).
#ifndef QCAL_TESTS_TEST_CLUSTER_H_
#define QCAL_TESTS_TEST_CLUSTER_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/process.h"
#include "grpcpp/grpcpp.h"

namespace qcal::testing {

// A child process (client/process.h, the project's one launcher) whose stdout and
// stderr are appended to `log` (a restarted coordinator keeps one log); killed
// (SIGKILL) when destroyed if still running.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& log) {
    client::SpawnOptions o;
    o.argv = std::move(argv);
    o.log_file = log;
    o.append_log = true;
    auto child = client::ChildProcess::Spawn(o);
    if (child.ok()) child_ = std::move(child).value();
  }
  ~Child() { Kill(SIGKILL); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return child_ ? child_->pid() : -1; }
  bool running() { return child_ && child_->Running(); }
  // Sends `sig` and waits for the process to end (up to `timeout`, then SIGKILL).
  // Returns whether it ended in time.
  bool Kill(int sig, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    return !child_ || !child_->Running() || child_->Kill(sig, absl::Seconds(timeout.count()));
  }
  // The wait status once it has ended; -1 before (or when it never started).
  int exit_status() const {
    if (!child_) return -1;
    return child_->WaitStatus().value_or(-1);
  }

 private:
  std::unique_ptr<client::ChildProcess> child_;
};

// Runs `argv` to completion with stdin from `in` (empty: /dev/null) and stdout and
// stderr to the files `out` and `err`. Returns the wait status, or -1 when it could
// not be started or ran past `timeout`.
inline int RunProgram(std::vector<std::string> argv, const std::string& in, const std::string& out,
                      const std::string& err,
                      std::chrono::seconds timeout = std::chrono::seconds(300)) {
  client::SpawnOptions o;
  o.argv = std::move(argv);
  o.stdin_file = in;
  o.log_file = out;
  o.stderr_file = err;
  absl::StatusOr<int> status = client::RunToCompletion(o, absl::Seconds(timeout.count()));
  return status.ok() ? *status : -1;
}

// Whether a RunProgram status is a normal exit with code 0.
inline bool ExitedZero(int status) {
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A coordinator (restartable on the same db and port) and any number of workers.
class TestCluster {
 public:
  explicit TestCluster(std::string dir, std::vector<std::string> extra_coordinator_flags = {})
      : dir_(std::move(dir)), extra_(std::move(extra_coordinator_flags)) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  // Starts (or restarts) the coordinator and waits until it serves. The first start
  // picks a free port; restarts reuse it.
  bool StartCoordinator(const std::string& data_root, double lease_seconds = 3) {
    const std::string port_file = dir_ + "/port";
    std::filesystem::remove(port_file);
    std::vector<std::string> argv = {QCAL_COORDINATOR_BIN,
                                     "--listen", address_.empty() ? "127.0.0.1:0" : address_,
                                     "--db", dir_ + "/db", "--data-root", data_root,
                                     "--port-file", port_file, "--metrics-listen", "",
                                     "--lease-seconds", std::to_string(lease_seconds)};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    coordinator_ = std::make_unique<Child>(argv, dir_ + "/coordinator.log");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
      if (std::filesystem::exists(port_file)) {
        std::string a = ReadAll(port_file);
        while (!a.empty() && (a.back() == '\n')) a.pop_back();
        address_ = a;
        return true;
      }
      if (!coordinator_->running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  Child& coordinator() { return *coordinator_; }

  Child& AddWorker(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {QCAL_WORKER_BIN, "--coordinator", address_, "--threads", "1",
                                     "--name", "w" + std::to_string(workers_.size())};
    argv.insert(argv.end(), extra.begin(), extra.end());
    workers_.push_back(std::make_unique<Child>(
        argv, dir_ + "/worker" + std::to_string(workers_.size()) + ".log"));
    return *workers_.back();
  }
  std::vector<std::unique_ptr<Child>>& workers() { return workers_; }

  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  }
  const std::string& address() const { return address_; }
  const std::string& dir() const { return dir_; }
  std::string Logs() const {
    std::string out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      if (e.path().extension() == ".log") out += "=== " + e.path().string() + "\n" + ReadAll(e.path());
    }
    return out;
  }

 private:
  std::string dir_;
  std::vector<std::string> extra_;
  std::string address_;
  std::unique_ptr<Child> coordinator_;
  std::vector<std::unique_ptr<Child>> workers_;
};

}  // namespace qcal::testing

#endif  // QCAL_TESTS_TEST_CLUSTER_H_
