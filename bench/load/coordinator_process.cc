#include "bench/load/coordinator_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;

// The running coordinator's pid and a note naming the scratch folder, for the signal
// handler (which may only make async-signal-safe calls).
std::atomic<pid_t> g_coordinator_pid{-1};
char g_interrupt_note[1024];
size_t g_interrupt_note_size = 0;

}  // namespace

void SetInterruptNote(const std::string& note) {
  g_interrupt_note_size = std::min(note.size(), sizeof(g_interrupt_note));
  std::memcpy(g_interrupt_note, note.data(), g_interrupt_note_size);
}

void KillCoordinatorAndExit(int sig) {
  const pid_t pid = g_coordinator_pid.load();
  if (pid > 0) ::kill(pid, SIGKILL);
  if (g_interrupt_note_size > 0) {
    ssize_t ignored = ::write(2, g_interrupt_note, g_interrupt_note_size);
    (void)ignored;
  }
  _exit(128 + sig);
}

absl::StatusOr<std::unique_ptr<CoordinatorProcess>> CoordinatorProcess::Start(
    const Flags& flags, const std::string& dir, const std::vector<std::string>& data_roots,
    int metrics_port) {
  fs::create_directories(dir);
  const std::string port_file = dir + "/port";
  client::SpawnOptions options;
  options.argv = {flags.coordinator_bin,
                  "--listen",
                  "127.0.0.1:0",
                  "--db",
                  dir + "/db",
                  "--port-file",
                  port_file,
                  "--metrics-listen",
                  metrics_port > 0 ? absl::StrCat("127.0.0.1:", metrics_port) : std::string()};
  for (const std::string& r : data_roots) {
    options.argv.push_back("--data-root");
    options.argv.push_back(r);
  }
  options.log_file = dir + "/coordinator.log";
  options.append_log = true;  // a reused --work-dir keeps earlier runs' logs
  absl::StatusOr<std::unique_ptr<client::ChildProcess>> child =
      client::ChildProcess::Spawn(options);
  if (!child.ok()) return child.status();
  g_coordinator_pid.store((*child)->pid());
  auto p = std::unique_ptr<CoordinatorProcess>(
      new CoordinatorProcess(std::move(*child), options.log_file, metrics_port));
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < until) {
    if (fs::exists(port_file)) {
      std::string a = ReadFile(port_file);
      while (!a.empty() && a.back() == '\n') a.pop_back();
      if (!a.empty()) {
        p->address_ = a;
        return p;
      }
    }
    if (!p->Running()) {
      return absl::InternalError(
          absl::StrCat("qcal-coordinator exited at start: ", Tail(ReadFile(p->log_), 2000)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError("qcal-coordinator did not serve within 60 s");
}

CoordinatorProcess::CoordinatorProcess(std::unique_ptr<client::ChildProcess> child, std::string log,
                                       int metrics_port)
    : child_(std::move(child)), log_(std::move(log)), metrics_port_(metrics_port) {}

CoordinatorProcess::~CoordinatorProcess() {
  // SIGKILL, not ChildProcess's own graceful stop: a phase that did not call Stop()
  // failed or returned early, and its coordinator's state is scratch.
  if (Running()) {
    child_->Kill(SIGKILL, absl::Seconds(10));
    Running();
  }
}

bool CoordinatorProcess::Stop() {
  const bool ended = child_->Kill(SIGTERM, absl::Seconds(20));
  Running();  // it has ended either way; forget its pid
  const std::optional<int> status = child_->WaitStatus();
  return ended && status.has_value() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

std::string CoordinatorProcess::LogTail() const { return Tail(ReadFile(log_), 3000); }

bool CoordinatorProcess::Running() {
  if (child_->Running()) return true;
  // A reaped pid may be reused: the signal handler must no longer kill it. (Clears
  // the slot only while it names this child.)
  pid_t mine = child_->pid();
  g_coordinator_pid.compare_exchange_strong(mine, -1);
  return false;
}

}  // namespace qcal::bench
