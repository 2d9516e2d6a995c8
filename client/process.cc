#include "client/process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/exit_codes.h"
#include "common/status_macros.h"

namespace qcal::client {
namespace {

constexpr absl::Duration kReapPoll = absl::Milliseconds(20);

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

// Runs in the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void ExecChild(char* const* argv, int stdin_fd, int log_fd, int stderr_fd,
                            int error_fd, pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(127);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) {
    ::sigaction(signo, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (stdin_fd >= 0) ::dup2(stdin_fd, STDIN_FILENO);
  if (log_fd >= 0) ::dup2(log_fd, STDOUT_FILENO);
  if (stderr_fd >= 0) ::dup2(stderr_fd, STDERR_FILENO);
  ::execv(argv[0], argv);
  const int err = errno;
  ssize_t ignored = ::write(error_fd, &err, sizeof(err));
  (void)ignored;
  ::_exit(127);
}

// The descriptors a child inherits, closed in the parent once it has forked.
struct Fds {
  int in = -1, log = -1, err = -1;
  ~Fds() {
    for (int fd : {in, log, err}) {
      if (fd >= 0) ::close(fd);
    }
  }
  absl::Status Open(const std::string& path, int flags, int* fd, const char* what) {
    if (path.empty()) return absl::OkStatus();
    *fd = ::open(path.c_str(), flags, 0644);
    if (*fd < 0) {
      return absl::InternalError(absl::StrCat("cannot open ", what, " ", path, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("no program to run");
  const std::string& program = options.argv[0];
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  Fds fds;
  const int log_flags = O_WRONLY | O_CREAT | O_CLOEXEC | (options.append_log ? O_APPEND : O_TRUNC);
  QCAL_RETURN_IF_ERROR(fds.Open(options.log_file, log_flags, &fds.log, "log file"));
  QCAL_RETURN_IF_ERROR(
      fds.Open(options.stderr_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, &fds.err, "stderr file"));
  QCAL_RETURN_IF_ERROR(fds.Open(options.stdin_file.empty() ? "/dev/null" : options.stdin_file,
                                O_RDONLY | O_CLOEXEC, &fds.in, "stdin file"));
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) ExecChild(argv.data(), fds.in, fds.log, fds.err < 0 ? fds.log : fds.err, error_pipe[1], parent);
  const int fork_errno = errno;
  ::close(error_pipe[1]);
  if (pid < 0) {
    ::close(error_pipe[0]);
    return absl::InternalError(
        absl::StrCat("cannot start ", program, ": fork: ", std::strerror(fork_errno)));
  }
  // Also set the group from here, so it is in place whichever runs first.
  ::setpgid(pid, pid);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return absl::InternalError(
        absl::StrCat("cannot execute ", program, ": ", std::strerror(exec_errno)));
  }
  return std::unique_ptr<ChildProcess>(
      new ChildProcess(pid, Basename(program), options.log_file));
}

ChildProcess::~ChildProcess() { StopAll({this}, absl::Seconds(10)); }

bool ChildProcess::ReapLocked() {
  if (exited_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exited_ = true;
    wait_status_ = status;
  } else if (r < 0 && errno == ECHILD) {
    exited_ = true;  // reaped elsewhere; nothing to wait for
  }
  return exited_;
}

bool ChildProcess::Running() {
  absl::MutexLock lock(&mu_);
  return !ReapLocked();
}

std::string ChildProcess::ExitDescription() {
  absl::MutexLock lock(&mu_);
  if (!ReapLocked()) return "running";
  if (WIFEXITED(wait_status_)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(wait_status_));
  }
  if (WIFSIGNALED(wait_status_)) {
    const int signo = WTERMSIG(wait_status_);
    return absl::StrCat("killed by signal ", signo, " (", strsignal(signo), ")");
  }
  return "ended";
}

bool ChildProcess::Kill(int signo, absl::Duration timeout) {
  Signal(signo);
  const absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= deadline) {
      StopAll({this}, absl::ZeroDuration());
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

std::optional<int> ChildProcess::WaitStatus() {
  absl::MutexLock lock(&mu_);
  if (!ReapLocked()) return std::nullopt;
  return wait_status_;
}

absl::StatusOr<int> RunToCompletion(const SpawnOptions& options, absl::Duration timeout) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Spawn(options));
  const absl::Time deadline = absl::Now() + timeout;
  while (child->Running()) {
    if (absl::Now() >= deadline) {
      child->Kill(SIGKILL, absl::Seconds(10));
      return absl::DeadlineExceededError(absl::StrCat(child->name(), " ran longer than ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return *child->WaitStatus();
}

void ChildProcess::Signal(int signo) {
  absl::MutexLock lock(&mu_);
  if (!ReapLocked()) ::kill(pid_, signo);
}

void StopAll(const std::vector<ChildProcess*>& children, absl::Duration grace,
             const std::function<bool()>& hurry) {
  for (ChildProcess* child : children) child->Signal(SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (true) {
    bool any_running = false;
    for (ChildProcess* child : children) any_running |= child->Running();
    if (!any_running) return;
    if (absl::Now() >= deadline || (hurry && hurry())) break;
    absl::SleepFor(kReapPoll);
  }
  for (ChildProcess* child : children) {
    child->Signal(SIGKILL);
    absl::MutexLock lock(&child->mu_);
    if (child->exited_) continue;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(child->pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    child->exited_ = true;
    if (r == child->pid_) child->wait_status_ = status;
  }
}

absl::StatusOr<std::string> SelfExecutablePath() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return absl::InternalError(
        absl::StrCat("cannot read /proc/self/exe: ", std::strerror(errno)));
  }
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<std::string> FindExecutable(const std::string& name,
                                           const std::string& override_path,
                                           const std::vector<std::string>& search_dirs,
                                           const std::string& flag) {
  if (!override_path.empty()) {
    if (!IsExecutableFile(override_path)) {
      return UsageError(
          absl::StrCat(flag, " ", override_path, " is not an executable file"));
    }
    return override_path;
  }
  std::string searched;
  for (const std::string& dir : search_dirs) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (IsExecutableFile(candidate)) return candidate;
    absl::StrAppend(&searched, dir, ", ");
  }
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      const std::string candidate = absl::StrCat(dir, "/", name);
      if (IsExecutableFile(candidate)) return candidate;
    }
  }
  return absl::NotFoundError(absl::StrCat(name, " not found in ", searched,
                                          "or $PATH; pass ", flag, " PATH"));
}

std::string LastLogLine(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > 4096 ? size - 4096 : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  std::string last;
  for (absl::string_view line : absl::StrSplit(tail, '\n')) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
      line.remove_suffix(1);
    }
    if (!line.empty()) last = std::string(line);
  }
  return last;
}

}  // namespace qcal::client
