// soak_bench: the service on a bad day, bounded in time, loopback only (issue 15's
// soak). Runs the real qcal-coordinator and qcal-worker binaries and, for --seconds,
// while concurrent clients submit calibration jobs:
//
//   - kill -9 a random worker (restarted after up to 1.5 s) or the coordinator
//     (restarted on the same --db and port; the workers re-register by themselves),
//     every 2-5 s on a seeded schedule;
//   - when a tmpfs can be mounted (root), puts the database on it and fills it
//     (fallocate) twice for a while, then frees it: once below the coordinator's
//     reserve (--min-free-disk-mb --reserve-mb, --leave-mb left: new work and reports
//     are refused, leases kept), once with no reserve (the coordinator is killed and
//     restarted with --min-free-disk-mb 0, then the volume filled, --full-leave-mb
//     left, and held until a RocksDB write has failed and the database suspended
//     writes, a few seconds more at most). Kills go on meanwhile, so coordinators
//     also start on the full volume. Without a tmpfs only this phase is skipped, and
//     the output says so;
//   - client threads each submit a job (a unique request_id, retried until
//     answered), poll GetJob until it ends, list jobs, and now and then re-submit an
//     old request_id; a storm thread has --storm-size threads submit one request_id
//     at the same moment.
//
// Then it stops the faults, waits (at most --drain-seconds) for every job to end,
// and prints: each job's state and whether its statistics equal the fault-free
// reference (the engine in this process on the same samples: bitwise for counts,
// min, max and sketch buckets, sums within 1e-12 relative), jobs submitted /
// calibrated / failed, duplicates (jobs created per request_id beyond 1), crashes (a
// coordinator or worker that exited without the soak killing it, did not stop
// cleanly at the end, or logged an assertion), the faults injected by kind, the
// clients' calls by result, and `PASS` or `FAIL: <reasons>` (exit 0 / 1; 2 for bad
// flags, 130 when interrupted).
//
//   build/bench/soak_bench [--seconds 90] [--quick] [--seed S] [--workers 2]
//                          [--clients 4] [--storm-size 12] [--drain-seconds 180]
//                          [--keep] [--coordinator-bin B] [--worker-bin B]
//
// The seed fixes the fault schedule and the job specs; what the processes do between
// the faults depends on timing. Children are started with client/process.h (own
// process group, PR_SET_PDEATHSIG); the tmpfs is unmounted at the end, on error and
// on SIGINT/SIGTERM (a second signal kills the children and detaches the mount at
// once). Logs stay in the scratch folder when the soak fails or with --keep.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/process.h"
#include "common/stats/stats_proto.h"
#include "common/stats/stats_set.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kModel[] = "models/llama-small";
constexpr char kCorpus[] = "corpus/calib.jsonl.zst";
constexpr int64_t kSeqLen = 64;
// Samples per job: few distinct values, so few references to compute.
constexpr int64_t kSampleChoices[] = {48, 64, 80, 96};
// Log lines that mean a process died of a bug, whatever its exit status.
// Free space kept on the database volume outside the disk phases (see Volume).
constexpr int64_t kKeepFreeLow = int64_t{96} << 20;
constexpr int64_t kKeepFreeHigh = int64_t{128} << 20;
constexpr const char* kCrashWords[] = {"Assertion", "terminate called", "Check failed",
                                       "Segmentation fault", "AddressSanitizer",
                                       "runtime error:"};

struct Flags {
  double seconds = 90;
  bool quick = false;
  uint64_t seed = 0;  // 0: from the clock (printed)
  int workers = 2;
  int clients = 4;
  int storm_size = 12;
  double drain_seconds = 180;
  double lease_seconds = 3;
  int tmpfs_mb = 1024;  // the database grows ~1-2 MB/s here (kill -9 leaves little compacted)
  int reserve_mb = 16;
  int leave_mb = 8;       // left free below the reserve
  int full_leave_mb = 1;  // left free with no reserve (a few reports fill it)
  bool keep = false;
  std::string data = QCAL_TEST_DATA_DIR;
  std::string coordinator_bin = QCAL_COORDINATOR_BIN;
  std::string worker_bin = QCAL_WORKER_BIN;
};

// ---------------------------------------------------------------- time, output

const Clock::time_point g_start = Clock::now();
double Now() { return std::chrono::duration<double>(Clock::now() - g_start).count(); }

std::mutex g_print_mu;
// One timestamped progress line.
template <typename... Args>
void Event(const char* format, Args... args) {
  std::lock_guard<std::mutex> lock(g_print_mu);
  std::printf("[%6.1fs] ", Now());
  std::printf(format, args...);
  std::printf("\n");
}

std::string ReadFileFrom(const std::string& path, std::streamoff offset = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(offset);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

// The regular files under a folder: their bytes, and what they hold allocated on
// disk (st_blocks, so preallocated space counts).
struct TreeSize {
  int64_t bytes = 0, allocated = 0;
};
TreeSize TreeBytes(const std::string& dir) {
  TreeSize t;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st;
    if (::stat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      t.bytes += st.st_size;
      t.allocated += st.st_blocks * 512;
    }
  }
  return t;
}

// ---------------------------------------------------------------- signals

// First SIGINT/SIGTERM/SIGHUP: the soak stops in order (children killed, tmpfs
// unmounted). Second: the handler kills the children and detaches the mount itself.
std::atomic<int> g_signals{0};
constexpr int kMaxPids = 64;
std::atomic<pid_t> g_pids[kMaxPids];
char g_mount_point[4096];
std::atomic<bool> g_mounted{false};

void OnSignal(int sig) {
  if (g_signals.fetch_add(1) == 0) return;
  for (auto& p : g_pids) {
    const pid_t pid = p.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  if (g_mounted.load()) ::umount2(g_mount_point, MNT_DETACH);
  static const char note[] = "\nsoak_bench: interrupted twice; children killed\n";
  ssize_t ignored = ::write(2, note, sizeof(note) - 1);
  (void)ignored;
  _exit(128 + sig);
}

bool Interrupted() { return g_signals.load() > 0; }

// Sleeps up to `seconds`, returning early on an interrupt.
void Nap(double seconds) {
  const Clock::time_point until =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (!Interrupted() && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(20),
                                                          until - Clock::now()));
  }
}

// ---------------------------------------------------------------- the volume

// A tmpfs for the database (mount(2), needs root), filled with fallocate'd files for
// the disk phases. Unmounted by Unmount() or the destructor.
//
// Outside the phases it keeps only kKeepFreeLow..kKeepFreeHigh free (ballast files):
// less than RocksDB preallocates for a write-ahead log (1.1 x the coordinator's
// 128 MB stats write buffer, 141 MB), so no log is ever preallocated. A log that
// was would take the writes made after a fill in its reserved blocks, and no write
// would fail however full the volume looked.
class Volume {
 public:
  explicit Volume(std::string dir) : dir_(std::move(dir)) {}
  ~Volume() { Unmount(); }

  // Mounts a tmpfs of `mb` MiB at the folder; false (with *why) when it cannot.
  bool Mount(int mb, std::string* why) {
    fs::create_directories(dir_);
    const std::string options = absl::StrCat("size=", mb, "m");
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      *why = absl::StrCat("mount -t tmpfs -o ", options, " tmpfs ", dir_, ": ", std::strerror(errno));
      return false;
    }
    std::snprintf(g_mount_point, sizeof(g_mount_point), "%s", dir_.c_str());
    g_mounted = true;
    mounted_ = true;
    return true;
  }
  bool mounted() const { return mounted_; }
  const std::string& dir() const { return dir_; }

  int64_t FreeBytes() const {
    struct statvfs st;
    if (::statvfs(dir_.c_str(), &st) != 0) return -1;
    return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
  }

  // Fills the volume but for `leave` bytes with one more fallocate'd file (a top-up
  // after RocksDB freed space adds another). False (with *why) when it cannot.
  // The coordinator may allocate meanwhile: ENOSPC is retried on what is free then.
  bool Fill(int64_t leave, std::string* why) {
    for (int attempt = 0;; ++attempt) {
      const int64_t size = FreeBytes() - leave;
      if (size <= 0) {
        *why = absl::StrCat("only ", FreeBytes(), " bytes free");
        return false;
      }
      const int err = Allocate(absl::StrCat(dir_, "/fill-", fills_), size);
      if (err == 0) {
        fills_++;
        return true;
      }
      if (err != ENOSPC || attempt == 4) {
        *why = absl::StrCat("fallocate ", size, " bytes: ", std::strerror(err));
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  bool filled() const { return fills_ > 0; }
  void Free() {
    for (int i = 0; i < fills_; ++i) ::unlink(absl::StrCat(dir_, "/fill-", i).c_str());
    fills_ = 0;
  }

  // Outside the disk phases: keeps between `low` and `high` bytes free with ballast
  // files of kBallastChunk (removed as the database grows).
  void KeepFree(int64_t low, int64_t high) {
    while (FreeBytes() > high && Allocate(BallastPath(ballast_), kBallastChunk) == 0) ballast_++;
    while (FreeBytes() < low && ballast_ > 0) ::unlink(BallastPath(--ballast_).c_str());
  }
  void DropBallast() {
    while (ballast_ > 0) ::unlink(BallastPath(--ballast_).c_str());
  }

  void Unmount() {
    if (!mounted_) return;
    if (::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
    mounted_ = false;
    g_mounted = false;
  }

 private:
  static constexpr int64_t kBallastChunk = int64_t{8} << 20;

  std::string BallastPath(int i) const { return absl::StrCat(dir_, "/ballast-", i); }
  // fallocate(2)s a new file of `size` bytes; 0 or the errno (the file is then gone).
  static int Allocate(const std::string& path, int64_t size) {
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0) return errno;
    const int r = ::fallocate(fd, 0, 0, size);
    const int err = r == 0 ? 0 : errno;
    ::close(fd);
    if (err != 0) ::unlink(path.c_str());
    return err;
  }

  const std::string dir_;
  bool mounted_ = false;
  int fills_ = 0;
  int ballast_ = 0;
};

// ---------------------------------------------------------------- the processes

// A crash: a process that ended (or logged) what the soak did not cause.
struct Crash {
  std::string who;
  std::string what;
  std::string last_line;
};

// One child slot (the coordinator or worker i), restarted in place; its log is
// appended to across restarts.
struct Slot {
  std::string name;
  int pid_slot = 0;
  std::string log;
  std::unique_ptr<client::ChildProcess> child;
  int starts = 0;
  double restart_at = -1;  // when it is down: when to start it again
};

class Cluster {
 public:
  Cluster(const Flags& f, std::string scratch, std::string db, std::string data_root)
      : f_(f), scratch_(std::move(scratch)), db_(std::move(db)), data_root_(std::move(data_root)) {
    coordinator_.name = "coordinator";
    coordinator_.pid_slot = 0;
    coordinator_.log = scratch_ + "/logs/coordinator.log";
    for (int i = 0; i < f.workers; ++i) {
      Slot s;
      s.name = absl::StrCat("worker-", i);
      s.pid_slot = 1 + i;
      s.log = absl::StrCat(scratch_, "/logs/worker-", i, ".log");
      workers_.push_back(std::move(s));
    }
  }
  ~Cluster() { KillAll(); }

  const std::string& address() const { return address_; }
  const std::string& coordinator_log() const { return coordinator_.log; }
  int64_t coordinator_reserve_mb() const { return reserve_mb_; }
  int worker_count() const { return static_cast<int>(workers_.size()); }
  std::vector<Crash>& crashes() { return crashes_; }
  int refused_starts() const { return refused_starts_; }
  std::vector<std::string>& refused_start_lines() { return refused_start_lines_; }

  // Starts (or restarts) the coordinator with `reserve_mb` as --min-free-disk-mb and
  // waits until it has written its port file. The first start picks the port;
  // restarts reuse it. A clean exit at start while `disk_full` (the soak filled the
  // volume), or one whose last log line says "No space left", is a refusal, counted
  // and retried after 1 s; any other exit is a crash.
  bool StartCoordinator(int64_t reserve_mb, bool disk_full) {
    const std::string port_file = scratch_ + "/coordinator.port";
    std::error_code ec;
    fs::remove(port_file, ec);
    client::SpawnOptions o;
    o.argv = {f_.coordinator_bin,
              "--listen", address_.empty() ? "127.0.0.1:0" : address_,
              "--db", db_,
              "--data-root", data_root_,
              "--port-file", port_file,
              "--metrics-listen", "",
              "--lease-seconds", absl::StrCat(f_.lease_seconds),
              "--min-free-disk-mb", absl::StrCat(reserve_mb)};
    o.log_file = coordinator_.log;
    o.append_log = true;
    auto child = client::ChildProcess::Spawn(o);
    if (!child.ok()) {
      crashes_.push_back({"coordinator", absl::StrCat("cannot start: ", child.status().message()), ""});
      return false;
    }
    coordinator_.child = std::move(*child);
    coordinator_.starts++;
    coordinator_.restart_at = -1;
    g_pids[coordinator_.pid_slot] = coordinator_.child->pid();
    reserve_mb_ = reserve_mb;
    const double started = Now();
    const auto until = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < until && !Interrupted()) {
      std::string a = ReadFileFrom(port_file);
      while (!a.empty() && (a.back() == '\n' || a.back() == ' ')) a.pop_back();
      if (!a.empty() && a.find(':') != std::string::npos && a.back() != ':') {
        address_ = a;
        last_start_seconds_ = Now() - started;
        return true;
      }
      if (!coordinator_.child->Running()) {
        const std::optional<int> st = coordinator_.child->WaitStatus();
        const std::string line = client::LastLogLine(coordinator_.log);
        // A clean refusal on a volume without room for RocksDB's recovery is no crash.
        if (st && WIFEXITED(*st) && (disk_full || line.find("No space left") != std::string::npos)) {
          refused_starts_++;
          if (refused_start_lines_.size() < 3) refused_start_lines_.push_back(line);
          Event("coordinator refused to start, volume full (%s): %s",
                coordinator_.child->ExitDescription().c_str(), line.c_str());
        } else {
          AddCrash(coordinator_, "exited at start");
        }
        g_pids[coordinator_.pid_slot] = -1;
        coordinator_.child.reset();
        coordinator_.restart_at = Now() + 1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    crashes_.push_back({"coordinator", "did not write its port file within 60 s",
                        client::LastLogLine(coordinator_.log)});
    Kill(coordinator_);
    coordinator_.restart_at = Now() + 1;
    return false;
  }

  bool StartWorker(int i) {
    Slot& s = workers_[i];
    client::SpawnOptions o;
    o.argv = {f_.worker_bin, "--coordinator", address_, "--threads", "1", "--name",
              absl::StrCat("soak-w", i)};
    o.log_file = s.log;
    o.append_log = true;
    auto child = client::ChildProcess::Spawn(o);
    if (!child.ok()) {
      crashes_.push_back({s.name, absl::StrCat("cannot start: ", child.status().message()), ""});
      return false;
    }
    s.child = std::move(*child);
    s.starts++;
    s.restart_at = -1;
    g_pids[s.pid_slot] = s.child->pid();
    return true;
  }

  bool coordinator_up() { return coordinator_.child && coordinator_.child->Running(); }
  bool worker_up(int i) { return workers_[i].child && workers_[i].child->Running(); }

  // kill -9, then restart after `delay` seconds (by Tend). Returns the pid killed, or
  // -1 when it was not running (then it is already recorded as a crash or pending).
  pid_t KillCoordinator(double delay) { return KillSlot(coordinator_, delay); }
  pid_t KillWorker(int i, double delay) { return KillSlot(workers_[i], delay); }

  // Notices children that ended on their own (crashes: recorded, restarted after
  // 1 s) and starts those whose restart time has come. `reserve_mb` and `disk_full`
  // are for a coordinator restart.
  void Tend(int64_t reserve_mb, bool disk_full) {
    for (Slot* s : All()) {
      if (s->child && !s->child->Running()) {
        AddCrash(*s, "exited by itself");
        g_pids[s->pid_slot] = -1;
        s->child.reset();
        s->restart_at = Now() + 1;
      }
    }
    if (!coordinator_.child && coordinator_.restart_at >= 0 && Now() >= coordinator_.restart_at) {
      if (StartCoordinator(reserve_mb, disk_full)) {
        Event("coordinator restarted on the same db and %s (pid %d, reserve %lld MB), serving "
              "after %.2f s",
              address_.c_str(), coordinator_.child->pid(), static_cast<long long>(reserve_mb),
              last_start_seconds_);
      }
    }
    for (int i = 0; i < worker_count(); ++i) {
      Slot& s = workers_[i];
      if (!s.child && s.restart_at >= 0 && Now() >= s.restart_at && StartWorker(i)) {
        Event("%s restarted (pid %d)", s.name.c_str(), s.child->pid());
      }
    }
  }

  // Makes every slot run again now (no waiting for restart times).
  void EnsureAllUp(int64_t reserve_mb) {
    for (int tries = 0; tries < 10 && !coordinator_up() && !Interrupted(); ++tries) {
      if (!coordinator_.child) coordinator_.restart_at = 0;
      Tend(reserve_mb, false);  // a child that died is recorded first, then restarted
      if (!coordinator_up()) Nap(1);
    }
    for (Slot& s : workers_) {
      if (!s.child) s.restart_at = 0;
    }
    Tend(reserve_mb, false);
  }

  // The graceful end: SIGTERM to the workers, then the coordinator (20 s each); an
  // exit other than status 0 is a crash.
  void StopGracefully() {
    std::vector<Slot*> order;
    for (Slot& s : workers_) order.push_back(&s);
    order.push_back(&coordinator_);
    for (Slot* s : order) {
      if (!s->child) continue;
      if (!s->child->Running()) {
        AddCrash(*s, "exited by itself");
      } else {
        const bool ended = s->child->Kill(SIGTERM, absl::Seconds(20));
        const std::optional<int> st = s->child->WaitStatus();
        if (!ended || !st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
          AddCrash(*s, absl::StrCat(ended ? "" : "did not stop within 20 s of SIGTERM; ",
                                    "stop: ", s->child->ExitDescription()));
        }
      }
      g_pids[s->pid_slot] = -1;
      s->child.reset();
    }
  }

  void KillAll() {
    for (Slot* s : All()) {
      if (s->child) Kill(*s);
    }
  }

  // Every log's lines holding one of kCrashWords, as crashes.
  void ScanLogs() {
    for (Slot* s : All()) {
      const std::string text = ReadFileFrom(s->log);
      std::istringstream lines(text);
      std::string line;
      int found = 0;
      while (std::getline(lines, line)) {
        for (const char* w : kCrashWords) {
          if (line.find(w) != std::string::npos) {
            if (found++ < 3) crashes_.push_back({s->name, "its log says so", line});
            break;
          }
        }
      }
    }
  }

  int starts(const std::string& which) {
    int n = 0;
    for (Slot* s : All()) {
      if (which == "coordinator" ? s == &coordinator_ : s != &coordinator_) n += s->starts;
    }
    return n;
  }

 private:
  std::vector<Slot*> All() {
    std::vector<Slot*> all = {&coordinator_};
    for (Slot& s : workers_) all.push_back(&s);
    return all;
  }

  void AddCrash(Slot& s, const std::string& when) {
    crashes_.push_back({s.name, absl::StrCat(when, ": pid ", s.child->pid(), " ",
                                             s.child->ExitDescription()),
                        client::LastLogLine(s.log)});
    Event("CRASH: %s (pid %d) %s: %s", s.name.c_str(), s.child->pid(),
          s.child->ExitDescription().c_str(), client::LastLogLine(s.log).c_str());
  }

  void Kill(Slot& s) {
    s.child->Kill(SIGKILL, absl::Seconds(10));
    g_pids[s.pid_slot] = -1;
    s.child.reset();
  }

  pid_t KillSlot(Slot& s, double delay) {
    if (!s.child || !s.child->Running()) return -1;
    const pid_t pid = s.child->pid();
    s.child->Kill(SIGKILL, absl::Seconds(10));
    const std::optional<int> st = s.child->WaitStatus();
    if (!st || !WIFSIGNALED(*st) || WTERMSIG(*st) != SIGKILL) {
      AddCrash(s, "ended before the soak's SIGKILL");  // it had exited by itself
    }
    g_pids[s.pid_slot] = -1;
    s.child.reset();
    s.restart_at = Now() + delay;
    return pid;
  }

  const Flags& f_;
  const std::string scratch_, db_, data_root_;
  std::string address_;
  Slot coordinator_;
  std::vector<Slot> workers_;
  int64_t reserve_mb_ = 0;
  double last_start_seconds_ = 0;
  std::vector<Crash> crashes_;
  int refused_starts_ = 0;
  std::vector<std::string> refused_start_lines_;
};

// ---------------------------------------------------------------- client calls

// The clients' calls by method and result. Thread-safe.
class CallTable {
 public:
  void Add(const std::string& method, const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    Row& r = rows_[method];
    r.calls++;
    if (s.ok()) return;
    r.by_code[s.error_code()]++;
    if (!Expected(s.error_code()) && r.unexpected.size() < 3) {
      r.unexpected.push_back(absl::StrCat(method, ": code ", s.error_code(), ": ", s.error_message()));
    }
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && r.exhausted_sample.empty()) {
      r.exhausted_sample = s.error_message();
    }
  }

  // Codes a client must expect from a service that is restarted and short of disk.
  static bool Expected(grpc::StatusCode c) {
    return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
           c == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }

  int64_t Unexpected(std::vector<std::string>* samples) const {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (const auto& [method, r] : rows_) {
      for (const auto& [code, count] : r.by_code) {
        if (!Expected(code)) n += count;
      }
      samples->insert(samples->end(), r.unexpected.begin(), r.unexpected.end());
    }
    return n;
  }

  void Print() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::printf("client calls          calls        ok  unavailable  deadline  exhausted  other\n");
    for (const auto& entry : rows_) {
      const std::string& method = entry.first;
      const Row& r = entry.second;
      auto code = [&r](grpc::StatusCode c) {
        auto it = r.by_code.find(c);
        return static_cast<long long>(it == r.by_code.end() ? 0 : it->second);
      };
      int64_t errors = 0, other = 0;
      for (const auto& [c, count] : r.by_code) {
        errors += count;
        if (!Expected(c)) other += count;
      }
      std::printf("  %-16s %8lld %9lld %12lld %9lld %10lld %6lld\n", method.c_str(),
                  static_cast<long long>(r.calls), static_cast<long long>(r.calls - errors),
                  code(grpc::StatusCode::UNAVAILABLE), code(grpc::StatusCode::DEADLINE_EXCEEDED),
                  code(grpc::StatusCode::RESOURCE_EXHAUSTED), static_cast<long long>(other));
    }
    for (const auto& [method, r] : rows_) {
      if (!r.exhausted_sample.empty()) {
        std::printf("  %s refused while short of disk, e.g.: %s\n", method.c_str(),
                    r.exhausted_sample.c_str());
      }
    }
  }

 private:
  struct Row {
    int64_t calls = 0;
    std::map<grpc::StatusCode, int64_t> by_code;
    std::vector<std::string> unexpected;
    std::string exhausted_sample;
  };
  mutable std::mutex mu_;
  std::map<std::string, Row> rows_;
};

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

// One client: its own connection (as a separate process would have), reconnecting
// quickly after a coordinator restart.
class Api {
 public:
  Api(const std::string& address, CallTable* table) : table_(table) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::CalibrationService::NewStub(channel_);
  }

  void Connect(double seconds) { channel_->WaitForConnected(DeadlineIn(seconds)); }

  grpc::Status Submit(const v1::SubmitJobRequest& r, v1::Job* job) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(20));
    return Record("SubmitJob", stub_->SubmitJob(&ctx, r, job));
  }
  grpc::Status Get(const std::string& id, v1::Job* job) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(10));
    v1::GetJobRequest r;
    r.set_job_id(id);
    return Record("GetJob", stub_->GetJob(&ctx, r, job));
  }
  grpc::Status List(int page_size, const std::string& token, v1::ListJobsResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(10));
    v1::ListJobsRequest r;
    r.set_page_size(page_size);
    r.set_page_token(token);
    return Record("ListJobs", stub_->ListJobs(&ctx, r, out));
  }
  // Every job, following the pages.
  grpc::Status ListAll(std::vector<v1::Job>* jobs) {
    jobs->clear();
    std::string token;
    do {
      v1::ListJobsResponse page;
      grpc::Status s = List(1000, token, &page);
      if (!s.ok()) return s;
      for (auto& j : *page.mutable_jobs()) jobs->push_back(std::move(j));
      token = page.next_page_token();
    } while (!token.empty());
    return grpc::Status::OK;
  }
  // GetJobStats, concatenated into a StatsSet (as tests/e2e_util.h FetchStats).
  grpc::Status Stats(const std::string& id, stats::StatsSet* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(60));
    v1::GetJobStatsRequest r;
    r.set_job_id(id);
    auto reader = stub_->GetJobStats(&ctx, r);
    v1::StatsSetProto all;
    v1::JobStatsChunk chunk;
    int64_t tokens = 0;
    while (reader->Read(&chunk)) {
      if (!chunk.job_id().empty()) tokens = chunk.tokens();
      for (auto& l : *chunk.mutable_linears()) *all.add_linears() = std::move(l);
    }
    grpc::Status s = Record("GetJobStats", reader->Finish());
    if (!s.ok()) return s;
    all.set_tokens(tokens);
    auto set = stats::StatsSetFromProto(all);
    if (!set.ok()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, std::string(set.status().message()));
    }
    *out = std::move(*set);
    return s;
  }

 private:
  grpc::Status Record(const std::string& method, grpc::Status s) {
    table_->Add(method, s);
    return s;
  }

  CallTable* table_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CalibrationService::Stub> stub_;
};

// ---------------------------------------------------------------- the ledger

// What the clients asked for and were answered, by request_id (the job's
// display_name carries it, so the jobs created per request_id can be counted).
struct Request {
  v1::SubmitJobRequest req;
  std::string kind;           // "client", "storm"
  std::set<std::string> ids;  // job ids SubmitJob answered with
  int answers = 0;            // SubmitJob calls answered OK
};

class Ledger {
 public:
  void Add(const std::string& rid, const v1::SubmitJobRequest& req, const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_[rid].req = req;
    requests_[rid].kind = kind;
  }
  void Answer(const std::string& rid, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_[rid].ids.insert(id);
    requests_[rid].answers++;
  }
  std::map<std::string, Request> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Request> requests_;
};

struct Shared {
  const Flags* flags = nullptr;
  std::string address;
  CallTable calls;
  Ledger ledger;
  std::atomic<bool> submitting{true};
  // Submits are retried until this many seconds of Now() (set when faults stop).
  std::atomic<double> give_up_at{1e18};
  std::atomic<int> resubmits{0};
  std::atomic<int> storms{0};
  std::atomic<int> storm_submits{0};
};

v1::SubmitJobRequest RandomRequest(std::mt19937_64& rng, const std::string& rid) {
  v1::SubmitJobRequest r;
  r.set_request_id(rid);
  v1::JobSpec* s = r.mutable_spec();
  s->set_model(kModel);
  s->set_corpus(kCorpus);
  s->mutable_sampling()->set_num_samples(
      kSampleChoices[std::uniform_int_distribution<int>(0, 3)(rng)]);
  s->mutable_sampling()->set_seq_len(kSeqLen);
  s->set_shard_size(std::uniform_int_distribution<int>(1, 8)(rng));
  s->set_batch_size(std::uniform_int_distribution<int>(1, 8)(rng));
  s->set_report_interval_seconds(1);
  s->set_display_name(rid);
  return r;
}

// SubmitJob until it is answered (retrying the same request_id, so an answer lost
// in a coordinator kill creates nothing twice), or until the soak gives up.
std::optional<std::string> SubmitUntilAnswered(Shared& sh, Api& api, const v1::SubmitJobRequest& r) {
  while (!Interrupted() && Now() < sh.give_up_at.load()) {
    v1::Job job;
    const grpc::Status s = api.Submit(r, &job);
    if (s.ok()) {
      sh.ledger.Answer(r.request_id(), job.id());
      return job.id();
    }
    if (!CallTable::Expected(s.error_code())) return std::nullopt;  // counted by the table
    Nap(0.3);
  }
  return std::nullopt;
}

// A client: one job at a time, polled to its end, with listings and re-submits.
void ClientThread(Shared& sh, int index, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Api api(sh.address, &sh.calls);
  std::vector<std::pair<std::string, v1::SubmitJobRequest>> mine;
  for (int n = 0; sh.submitting.load() && !Interrupted(); ++n) {
    const std::string rid = absl::StrCat("c", index, "-", n);
    const v1::SubmitJobRequest req = RandomRequest(rng, rid);
    sh.ledger.Add(rid, req, "client");
    mine.emplace_back(rid, req);
    const std::optional<std::string> id = SubmitUntilAnswered(sh, api, req);
    if (!id) continue;
    for (int polls = 0; sh.submitting.load() && !Interrupted(); ++polls) {
      v1::Job job;
      if (api.Get(*id, &job).ok() && v1::IsFinalJobState(job.state())) break;
      if (polls % 8 == 7) {
        v1::ListJobsResponse page;
        api.List(50, "", &page);
      }
      Nap(0.25);
    }
    // Now and then the same request again, later: it must name the same job.
    if (mine.size() > 1 && std::uniform_int_distribution<int>(0, 5)(rng) == 0) {
      const v1::SubmitJobRequest& old =
          mine[std::uniform_int_distribution<size_t>(0, mine.size() - 2)(rng)].second;
      if (SubmitUntilAnswered(sh, api, old)) sh.resubmits++;
    }
  }
}

// Every 6-10 s, --storm-size threads submit one request_id at the same moment.
void StormThread(Shared& sh, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int n = 0; !Interrupted(); ++n) {
    Nap(std::uniform_real_distribution<double>(6, 10)(rng));
    if (!sh.submitting.load() || Interrupted()) return;
    const std::string rid = absl::StrCat("storm-", n);
    const v1::SubmitJobRequest req = RandomRequest(rng, rid);
    sh.ledger.Add(rid, req, "storm");
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < sh.flags->storm_size; ++t) {
      threads.emplace_back([&sh, &req, &go] {
        Api api(sh.address, &sh.calls);
        api.Connect(2);
        while (!go.load() && !Interrupted()) std::this_thread::yield();
        if (SubmitUntilAnswered(sh, api, req)) sh.storm_submits++;
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    go = true;
    for (auto& t : threads) t.join();
    sh.storms++;
  }
}

// ---------------------------------------------------------------- statistics

struct Comparison {
  bool same = false;
  std::string why;     // the first difference
  double worst = 0;    // largest relative sum / sum-of-squares difference
};

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// As tests/service_e2e_test.cc ExpectSameStatistics: bitwise for counts, min, max
// and sketch buckets; sums and sums of squares within 1e-12 relative.
Comparison Compare(const stats::StatsSet& got, const stats::StatsSet& want) {
  Comparison c;
  if (got.size() != want.size()) {
    c.why = absl::StrCat(got.size(), " linears, want ", want.size());
    return c;
  }
  if (got.tokens() != want.tokens()) {
    c.why = absl::StrCat(got.tokens(), " tokens, want ", want.tokens());
    return c;
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string& name = want.at(i).name;
    if (got.at(i).name != name) {
      c.why = absl::StrCat("linear ", i, " is ", got.at(i).name, ", want ", name);
      return c;
    }
    for (int side = 0; side < 2; ++side) {
      const auto& a = side ? got.at(i).output : got.at(i).input;
      const auto& b = side ? want.at(i).output : want.at(i).input;
      const std::string where = absl::StrCat(name, side ? " output" : " input");
      if (a.channels() != b.channels()) {
        c.why = absl::StrCat(where, ": channels differ");
        return c;
      }
      if (a.count() != b.count()) {
        c.why = absl::StrCat(where, ": count ", a.count(), ", want ", b.count());
        return c;
      }
      if (!BitwiseEqual(a.min(), b.min()) || !BitwiseEqual(a.max(), b.max())) {
        c.why = absl::StrCat(where, ": min or max differ");
        return c;
      }
      if (!(a.sketch() == b.sketch())) {
        c.why = absl::StrCat(where, ": sketch buckets differ");
        return c;
      }
      for (int64_t ch = 0; ch < a.channels(); ++ch) {
        const double d = std::abs(a.sum()[ch] - b.sum()[ch]) / std::max(1e-300, std::abs(b.sum()[ch]));
        const double e = std::abs(a.sumsq()[ch] - b.sumsq()[ch]) / std::max(1e-300, b.sumsq()[ch]);
        c.worst = std::max({c.worst, d, e});
      }
    }
  }
  if (c.worst > 1e-12) {
    c.why = absl::StrCat("sums differ by ", c.worst, " relative");
    return c;
  }
  c.same = true;
  return c;
}

// The fault-free reference: the engine in this process on the same samples, once
// per (samples, seq_len).
class References {
 public:
  explicit References(std::string data) : data_(std::move(data)) {}

  absl::StatusOr<const stats::StatsSet*> Get(int64_t samples, int64_t seq_len) {
    const auto key = std::make_pair(samples, seq_len);
    auto it = cache_.find(key);
    if (it != cache_.end()) return &it->second;
    const std::string model = data_ + "/" + kModel;
    if (!engine_) {
      EngineOptions eo;
      eo.batch_size = 8;
      eo.threads = 1;
      auto engine = CalibrationEngine::Load(model, eo);
      if (!engine.ok()) return engine.status();
      engine_ = std::move(*engine);
    }
    text::SamplingOptions o;
    o.num_samples = samples;
    o.seq_len = seq_len;
    auto sampler = text::OpenCorpusSampler(model, data_ + "/" + kCorpus, o);
    if (!sampler.ok()) return sampler.status();
    auto ids = sampler->sampler->Samples(0, samples);
    if (!ids.ok()) return ids.status();
    stats::StatsSet s;
    if (absl::Status st = engine_->Accumulate(*ids, &s); !st.ok()) return st;
    return &(cache_[key] = std::move(s));
  }
  size_t size() const { return cache_.size(); }

 private:
  const std::string data_;
  std::unique_ptr<CalibrationEngine> engine_;
  std::map<std::pair<int64_t, int64_t>, stats::StatsSet> cache_;
};

// ---------------------------------------------------------------- faults

struct DiskPhase {
  std::string name;
  double start = 0, end = 0;
  int64_t reserve_mb = 0;  // the coordinator's --min-free-disk-mb during it
  int64_t leave_mb = 0;    // MB left free
  bool begun = false, done = false, ran = false;
  int64_t left_bytes = 0;
  int64_t log_offset = 0;
  bool logged_short = false;      // the coordinator said "short of space"
  bool writes_suspended = false;  // ... with its writes suspended (a write failed)
  bool enospc = false;            // RocksDB logged "No space left on device"
  double enospc_at = 0;           // ... first, at this time
  double held = 0;                // seconds the volume was full
  bool resumed = false;           // "has space again" logged after it
  TreeSize db;                    // the database's size when the phase began
  int topups = 0;                 // fills after the coordinator freed space
  std::string skipped;            // why it did not run
};

struct FaultCounts {
  int worker_kills = 0;
  int coordinator_kills = 0;
};

// ---------------------------------------------------------------- main

struct JobRow {
  v1::Job job;
  std::string rid;
  bool have_stats = false;
  stats::StatsSet stats;
  std::string stats_error;
  Comparison cmp;
};

int Main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Flags f;
  CLI::App app{"soak_bench: jobs under kill -9 of workers and coordinator, a full disk and "
               "concurrent clients (loopback, bounded)"};
  app.add_option("--seconds", f.seconds, "Seconds of faults and submits")->check(CLI::Range(5.0, 3600.0))->capture_default_str();
  app.add_flag("--quick", f.quick, "About 30 s (sets --seconds 30)");
  app.add_option("--seed", f.seed, "Seed of the fault schedule and job specs (0: from the clock)");
  app.add_option("--workers", f.workers, "qcal-worker processes")->check(CLI::Range(1, 16))->capture_default_str();
  app.add_option("--clients", f.clients, "Client threads, one job at a time each")->check(CLI::Range(1, 32))->capture_default_str();
  app.add_option("--storm-size", f.storm_size, "Threads submitting one request_id at once")->check(CLI::Range(2, 64))->capture_default_str();
  app.add_option("--drain-seconds", f.drain_seconds, "Most seconds to wait for the jobs after the faults")->check(CLI::Range(10.0, 1800.0))->capture_default_str();
  app.add_option("--lease-seconds", f.lease_seconds, "The coordinator's --lease-seconds")->check(CLI::Range(1.0, 60.0))->capture_default_str();
  app.add_option("--tmpfs-mb", f.tmpfs_mb, "Size of the database's tmpfs")->check(CLI::Range(256, 16384))->capture_default_str();
  app.add_option("--reserve-mb", f.reserve_mb, "The coordinator's --min-free-disk-mb outside the no-reserve phase")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--leave-mb", f.leave_mb, "MB left free in the below-reserve phase")->check(CLI::Range(0, 1024))->capture_default_str();
  app.add_option("--full-leave-mb", f.full_leave_mb, "MB left free in the no-reserve phase")->check(CLI::Range(0, 1024))->capture_default_str();
  app.add_flag("--keep", f.keep, "Keep the scratch folder (logs) even on PASS");
  app.add_option("--data", f.data, "Data root with models/ and corpus/")->capture_default_str();
  app.add_option("--coordinator-bin", f.coordinator_bin)->capture_default_str();
  app.add_option("--worker-bin", f.worker_bin)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (f.quick && app.count("--seconds") == 0) f.seconds = 30;
  if (f.seed == 0) {
    f.seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) %
             1000000007ULL;
  }
  if (f.leave_mb >= f.reserve_mb) {
    std::fprintf(stderr, "soak_bench: --leave-mb must be below --reserve-mb\n");
    return 2;
  }
  for (auto& p : g_pids) p = -1;
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const std::string scratch =
      (fs::temp_directory_path() / absl::StrCat("qcal-soak-", ::getpid())).string();
  fs::create_directories(scratch + "/logs");
  const std::string data_root = fs::absolute(f.data).lexically_normal().string();
  std::mt19937_64 rng(f.seed);
  std::printf(
      "soak_bench: seed %" PRIu64 ", %.0f s of faults, %d workers (1 thread each), %d clients + "
      "storms of %d, lease %.0f s, jobs of %s on %s (48-96 samples x %lld tokens, shards 1-8)\n",
      f.seed, f.seconds, f.workers, f.clients, f.storm_size, f.lease_seconds, kModel, kCorpus,
      static_cast<long long>(kSeqLen));
  std::printf("  coordinator %s\n  worker      %s\n  scratch     %s\n", f.coordinator_bin.c_str(),
              f.worker_bin.c_str(), scratch.c_str());

  // The database volume.
  Volume volume(scratch + "/vol");
  std::string mount_error;
  const bool mounted = volume.Mount(f.tmpfs_mb, &mount_error);
  const std::string db = volume.dir() + "/db";
  const double disk_len = std::clamp(0.08 * f.seconds, 5.0, 10.0);
  auto phase = [disk_len](const char* name, double start, int64_t reserve_mb, int64_t leave_mb) {
    DiskPhase p;
    p.name = name;
    p.start = start;
    p.end = start + disk_len;
    p.reserve_mb = reserve_mb;
    p.leave_mb = leave_mb;
    return p;
  };
  // One after the other (the no-reserve one may run up to 8 s longer, see below).
  std::vector<DiskPhase> phases = {
      phase("below reserve", 0.25 * f.seconds, f.reserve_mb, f.leave_mb),
      phase("full, no reserve", std::max(0.6 * f.seconds, 0.25 * f.seconds + disk_len + 2), 0,
            f.full_leave_mb)};
  for (DiskPhase& p : phases) {
    if (p.start + 2 > f.seconds) p.skipped = "--seconds is too short for it";
  }
  if (mounted) {
    std::printf("  database    %s on a %d MB tmpfs (%lld-%lld MB kept free by ballast files); "
                "disk phases at %.0f-%.0f s (reserve %d MB, %d MB left) and %.0f-%.0f s (no "
                "reserve, %d MB left)\n",
                db.c_str(), f.tmpfs_mb, static_cast<long long>(kKeepFreeLow >> 20),
                static_cast<long long>(kKeepFreeHigh >> 20), phases[0].start, phases[0].end,
                f.reserve_mb, f.leave_mb, phases[1].start, phases[1].end, f.full_leave_mb);
  } else {
    std::printf("  database    %s; NO DISK-FULL PHASE: cannot mount a tmpfs (%s)\n", db.c_str(),
                mount_error.c_str());
    for (DiskPhase& p : phases) {
      if (p.skipped.empty()) p.skipped = "cannot mount a tmpfs: " + mount_error;
    }
  }

  Cluster cluster(f, scratch, db, data_root);
  FaultCounts faults;
  int exit_code = 0;
  std::vector<std::string> reasons;
  auto reserve_now = [&] {
    for (const DiskPhase& p : phases) {
      if (p.begun && !p.done) return p.reserve_mb;
    }
    return static_cast<int64_t>(f.reserve_mb);
  };
  auto cleanup = [&] {
    cluster.KillAll();
    volume.Unmount();
  };
  if (mounted) volume.KeepFree(kKeepFreeLow, kKeepFreeHigh);
  if (!cluster.StartCoordinator(f.reserve_mb, false)) {
    std::printf("FAIL: the coordinator did not start: %s (log %s)\n",
                client::LastLogLine(cluster.coordinator_log()).c_str(),
                cluster.coordinator_log().c_str());
    cleanup();
    return 1;
  }
  for (int i = 0; i < f.workers; ++i) cluster.StartWorker(i);
  Event("coordinator on %s, %d workers started", cluster.address().c_str(), f.workers);

  Shared sh;
  sh.flags = &f;
  sh.address = cluster.address();
  std::vector<std::thread> clients;
  for (int i = 0; i < f.clients; ++i) {
    clients.emplace_back(ClientThread, std::ref(sh), i, f.seed * 1000 + static_cast<uint64_t>(i));
  }
  clients.emplace_back(StormThread, std::ref(sh), f.seed * 1000 + 999);

  // ---- faults
  std::uniform_real_distribution<double> gap(2, 5);
  double next_fault = Now() + gap(rng);
  const double faults_end = Now() + f.seconds;
  const double t0 = Now();
  bool forced_coordinator = false;
  while (!Interrupted() && Now() < faults_end) {
    const double t = Now() - t0;
    if (mounted && !volume.filled()) volume.KeepFree(kKeepFreeLow, kKeepFreeHigh);
    cluster.Tend(reserve_now(), volume.filled());
    for (DiskPhase& p : phases) {
      if (!mounted) break;
      if (!p.skipped.empty()) continue;
      if (!p.begun && t >= p.start) {
        p.begun = true;
        if (cluster.coordinator_reserve_mb() != p.reserve_mb) {
          // The reserve is a start flag: kill -9 the coordinator and restart it with
          // this one (before the fill, so the write that fails is a running one's).
          const pid_t pid = cluster.KillCoordinator(0);
          if (pid > 0) {
            faults.coordinator_kills++;
            Event("kill -9 coordinator (pid %d) to restart it with --min-free-disk-mb %lld", pid,
                  static_cast<long long>(p.reserve_mb));
          }
          cluster.Tend(p.reserve_mb, false);
        }
        p.log_offset = FileSize(cluster.coordinator_log());
        p.db = TreeBytes(db);
        std::string why;
        if (!volume.Fill(p.leave_mb << 20, &why)) {
          p.skipped = "cannot fill the volume: " + why;
          Event("disk %s: SKIPPED, %s", p.name.c_str(), p.skipped.c_str());
          p.done = true;
          continue;
        }
        p.ran = true;
        p.left_bytes = volume.FreeBytes();
        Event("disk %s: volume filled, %.1f MB left (database %.1f MB, %.1f MB allocated; "
              "coordinator reserve %lld MB)",
              p.name.c_str(), p.left_bytes / 1048576.0, p.db.bytes / 1048576.0,
              p.db.allocated / 1048576.0, static_cast<long long>(cluster.coordinator_reserve_mb()));
      }
      if (!p.ran || p.done) continue;
      // What the coordinator said since the phase began (its log is small).
      const std::string log = ReadFileFrom(cluster.coordinator_log(), p.log_offset);
      p.logged_short = log.find("short of space") != std::string::npos;
      p.writes_suspended = log.find("writes suspended") != std::string::npos;
      if (!p.enospc && log.find("No space left") != std::string::npos) {
        p.enospc = true;
        p.enospc_at = t;
        Event("disk %s: a RocksDB write failed: No space left on device", p.name.c_str());
      }
      // With no reserve, keep the volume full until a write has failed (at most 5 s
      // more), and then until the coordinator has seen it (it checks every 500 ms;
      // at most 3 s more).
      const bool hold = (p.reserve_mb == 0 && !p.enospc && t < p.end + 5) ||
                        (p.enospc && !p.writes_suspended && t < p.enospc_at + 3);
      if (t < p.end || hold) {
        if (volume.FreeBytes() > ((p.leave_mb + 2) << 20)) {
          // A coordinator restart flushed its old write-ahead log into a table and
          // deleted it: fill the room, so the volume stays full for the whole phase.
          std::string why;
          if (volume.Fill(p.leave_mb << 20, &why) && p.topups++ == 0) {
            Event("disk %s: RocksDB freed space; volume filled again, %.1f MB left",
                  p.name.c_str(), volume.FreeBytes() / 1048576.0);
          }
        }
        continue;
      }
      p.done = true;
      p.held = t - p.start;
      volume.Free();
      Event("disk %s: freed after %.1f s (%.0f MB free); the coordinator logged: short of space "
            "%s, writes suspended %s",
            p.name.c_str(), p.held, volume.FreeBytes() / 1048576.0, p.logged_short ? "yes" : "no",
            p.writes_suspended ? "yes" : "no");
    }
    if (Now() >= next_fault) {
      // At least one coordinator kill in every run, whatever the draw.
      bool coordinator = std::uniform_real_distribution<double>(0, 1)(rng) < 0.3;
      if (!forced_coordinator && faults.coordinator_kills == 0 && t > 0.5 * f.seconds) {
        coordinator = forced_coordinator = true;
      }
      const double delay = std::uniform_real_distribution<double>(0.2, 1.5)(rng);
      if (coordinator) {
        const pid_t pid = cluster.KillCoordinator(delay);
        if (pid > 0) {
          faults.coordinator_kills++;
          Event("kill -9 coordinator (pid %d), restart in %.1f s", pid, delay);
        }
      } else {
        const int w = std::uniform_int_distribution<int>(0, f.workers - 1)(rng);
        const pid_t pid = cluster.KillWorker(w, delay);
        if (pid > 0) {
          faults.worker_kills++;
          Event("kill -9 worker-%d (pid %d), restart in %.1f s", w, pid, delay);
        }
      }
      next_fault = Now() + gap(rng);
    }
    Nap(0.05);
  }

  // ---- drain
  sh.submitting = false;
  volume.Free();
  volume.DropBallast();
  for (DiskPhase& p : phases) {
    if (p.begun && !p.done) {  // cut short by the end of the faults
      p.done = true;
      p.held = Now() - t0 - p.start;
    }
  }
  Event("faults stopped; restarting whatever is down, then waiting for every job (at most %.0f s)",
        f.drain_seconds);
  cluster.EnsureAllUp(f.reserve_mb);
  sh.give_up_at = Now() + 60;  // unanswered submits get a minute more, faults off
  for (auto& t : clients) t.join();

  Api api(cluster.address(), &sh.calls);
  std::vector<v1::Job> jobs;
  const double drain_end = Now() + f.drain_seconds;
  bool drained = false, listed_ok = false;
  double last_note = Now();
  while (!Interrupted() && Now() < drain_end) {
    cluster.Tend(f.reserve_mb, false);
    if (api.ListAll(&jobs).ok()) {
      listed_ok = true;
      int64_t open = 0;
      for (const v1::Job& j : jobs) open += v1::IsFinalJobState(j.state()) ? 0 : 1;
      if (open == 0) {
        drained = true;
        break;
      }
      if (Now() - last_note > 10) {
        Event("%lld of %zu jobs still running", static_cast<long long>(open), jobs.size());
        last_note = Now();
      }
    }
    Nap(0.5);
  }
  if (Interrupted()) {
    cleanup();
    std::printf("\nsoak_bench: interrupted; children killed, tmpfs unmounted; logs in %s\n",
                scratch.c_str());
    return 130;
  }
  Event("%s: %zu jobs", drained ? "every job ended" : "DRAIN TIMED OUT", jobs.size());

  // ---- statistics (fetched while the coordinator still serves)
  std::vector<JobRow> rows;
  for (const v1::Job& j : jobs) {
    JobRow r;
    r.job = j;
    r.rid = j.spec().display_name();
    if (j.state() == v1::JOB_CALIBRATED) {
      grpc::Status s;
      for (int attempt = 0; attempt < 5; ++attempt) {
        s = api.Stats(j.id(), &r.stats);
        if (s.ok() || !CallTable::Expected(s.error_code())) break;
        Nap(1);
      }
      r.have_stats = s.ok();
      if (!s.ok()) r.stats_error = absl::StrCat("GetJobStats: ", s.error_message());
    }
    rows.push_back(std::move(r));
  }
  std::sort(rows.begin(), rows.end(),
            [](const JobRow& a, const JobRow& b) { return a.job.id() < b.job.id(); });
  const TreeSize final_db = TreeBytes(db);
  cluster.StopGracefully();
  cluster.ScanLogs();
  volume.Unmount();

  // ---- references and comparison
  References refs(f.data);
  int64_t identical = 0, calibrated = 0, failed = 0, unfinished = 0;
  double worst = 0;
  for (JobRow& r : rows) {
    if (r.job.state() == v1::JOB_CALIBRATED) calibrated++;
    if (r.job.state() == v1::JOB_FAILED || r.job.state() == v1::JOB_CANCELLED) failed++;
    if (!v1::IsFinalJobState(r.job.state())) unfinished++;
    if (!r.have_stats) continue;
    auto ref = refs.Get(r.job.spec().sampling().num_samples(), r.job.spec().sampling().seq_len());
    if (!ref.ok()) {
      r.cmp.why = absl::StrCat("no reference: ", ref.status().message());
      continue;
    }
    r.cmp = Compare(r.stats, **ref);
    if (r.cmp.same) identical++;
    worst = std::max(worst, r.cmp.worst);
  }

  // ---- duplicates and lost jobs
  const std::map<std::string, Request> requests = sh.ledger.Snapshot();
  std::map<std::string, std::set<std::string>> created;  // request_id -> job ids listed
  std::set<std::string> listed_ids;
  int64_t strangers = 0;
  for (const JobRow& r : rows) {
    listed_ids.insert(r.job.id());
    if (requests.count(r.rid) == 0) {
      strangers++;
      continue;
    }
    created[r.rid].insert(r.job.id());
  }
  int64_t duplicates = 0, lost = 0, answered = 0, unanswered_created = 0, storm_keys = 0;
  std::vector<std::string> dup_lines, lost_lines;
  for (const auto& [rid, q] : requests) {
    std::set<std::string> all = q.ids;
    all.insert(created[rid].begin(), created[rid].end());
    if (q.kind == "storm") storm_keys++;
    if (!q.ids.empty()) answered++;
    if (q.ids.empty() && !created[rid].empty()) unanswered_created++;
    if (all.size() > 1) {
      duplicates += static_cast<int64_t>(all.size()) - 1;
      std::string ids;
      for (const std::string& id : all) ids += " " + id;
      dup_lines.push_back(absl::StrCat(rid, " (", q.kind, "): ", all.size(), " jobs:", ids));
    }
    for (const std::string& id : q.ids) {
      if (listed_ok && listed_ids.count(id) == 0) {
        lost++;
        lost_lines.push_back(absl::StrCat(rid, ": ", id, " was answered but is not listed"));
      }
    }
  }

  // ---- output
  std::printf("\n== jobs ==\n");
  std::printf("%-22s %-10s %7s %5s %5s %-11s %9s %8s %7s  %s\n", "job", "request", "samples",
              "shard", "batch", "state", "shards", "expiries", "backups", "statistics vs fault-free");
  for (const JobRow& r : rows) {
    const v1::JobProgress& p = r.job.progress();
    std::string verdict;
    if (r.job.state() != v1::JOB_CALIBRATED) {
      verdict = r.job.error().empty() ? "-" : r.job.error();
      for (const std::string& reason : r.job.failure_reasons()) verdict += " | " + reason;
    } else if (!r.have_stats) {
      verdict = "NOT READ: " + r.stats_error;
    } else if (r.cmp.same) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "identical (sums %.1e)", r.cmp.worst);
      verdict = buf;
    } else {
      verdict = "DIFFERENT: " + r.cmp.why;
    }
    std::string state = v1::JobState_Name(r.job.state());
    if (state.rfind("JOB_", 0) == 0) state = state.substr(4);
    std::printf("%-22s %-10s %7lld %5d %5d %-11s %4lld/%-4lld %8lld %7lld  %s\n",
                r.job.id().c_str(), r.rid.c_str(),
                static_cast<long long>(r.job.spec().sampling().num_samples()),
                r.job.spec().shard_size(), r.job.spec().batch_size(), state.c_str(),
                static_cast<long long>(p.shards_done()), static_cast<long long>(p.shards_total()),
                static_cast<long long>(p.lease_expiries()), static_cast<long long>(p.backup_tasks()),
                verdict.c_str());
  }

  std::printf("\n== faults ==\n");
  std::printf("fault                                  count  detail\n");
  std::printf("  kill -9 worker                      %6d  %d worker starts in all\n",
              faults.worker_kills, cluster.starts("worker"));
  std::printf("  kill -9 coordinator                 %6d  %d coordinator starts in all, same db "
              "and port\n",
              faults.coordinator_kills, cluster.starts("coordinator"));
  const std::string coordinator_log = ReadFileFrom(cluster.coordinator_log());
  for (size_t i = 0; i < phases.size(); ++i) {
    DiskPhase& p = phases[i];
    if (!p.ran) continue;
    const size_t from = std::min<size_t>(static_cast<size_t>(p.log_offset), coordinator_log.size());
    const size_t to = i + 1 < phases.size() && phases[i + 1].ran
                          ? static_cast<size_t>(phases[i + 1].log_offset)
                          : coordinator_log.size();
    const std::string region = coordinator_log.substr(from, to > from ? to - from : 0);
    // Refusing from "short of space" until "has space again" or a fresh start (which
    // says "short of space" again within 500 ms if the volume still is).
    bool refusing = false;
    std::istringstream lines(region);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("short of space") != std::string::npos) refusing = true;
      if (line.find("has space again") != std::string::npos ||
          line.find("serving on") != std::string::npos) {
        refusing = false;
      }
    }
    p.resumed = !refusing;
  }
  for (const DiskPhase& p : phases) {
    if (!p.ran) {
      std::printf("  disk %-30s %6d  SKIPPED: %s\n", p.name.c_str(), 0,
                  p.skipped.empty() ? "not reached" : p.skipped.c_str());
      continue;
    }
    std::printf("  disk %-30s %6d  %.1f s full, %.1f MB left (%d top-ups), reserve %lld MB; "
                "a write failed: %s; coordinator: short of space %s, writes suspended %s, "
                "space again %s\n",
                p.name.c_str(), 1, p.held, p.left_bytes / 1048576.0, p.topups,
                static_cast<long long>(p.reserve_mb), p.enospc ? "yes" : "no",
                p.logged_short ? "yes" : "no", p.writes_suspended ? "yes" : "no",
                p.logged_short ? (p.resumed ? "yes" : "NO") : "-");
  }
  std::printf("  coordinator starts refused (full)   %6d", cluster.refused_starts());
  if (!cluster.refused_start_lines().empty()) {
    std::printf("  e.g. %s", cluster.refused_start_lines().front().c_str());
  }
  std::printf("\n");
  std::printf("  same-request_id storms              %6d  %d threads each, %d answers\n",
              sh.storms.load(), f.storm_size, sh.storm_submits.load());
  std::printf("  later re-submits of a request_id    %6d\n", sh.resubmits.load());

  std::printf("\n== clients ==\n");
  sh.calls.Print();

  std::printf("\n== summary ==\n");
  const int64_t listed = static_cast<int64_t>(rows.size());
  auto pct = [](int64_t a, int64_t b) { return b > 0 ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  std::printf("  request_ids submitted               %6zu  (%lld storm keys), %lld answered, "
              "%lld unanswered that created a job\n",
              requests.size(), static_cast<long long>(storm_keys), static_cast<long long>(answered),
              static_cast<long long>(unanswered_created));
  std::printf("  jobs created (listed)               %6lld\n", static_cast<long long>(listed));
  std::printf("  jobs completed (CALIBRATED)         %6lld  %.0f%%\n",
              static_cast<long long>(calibrated), pct(calibrated, listed));
  std::printf("  jobs failed or cancelled            %6lld\n", static_cast<long long>(failed));
  std::printf("  jobs unfinished after the drain     %6lld\n", static_cast<long long>(unfinished));
  std::printf("  statistics identical to fault-free  %6lld  of %lld calibrated (%zu references; "
              "largest relative sum difference %.2g)\n",
              static_cast<long long>(identical), static_cast<long long>(calibrated), refs.size(),
              worst);
  std::printf("  duplicates                          %6lld\n", static_cast<long long>(duplicates));
  for (const std::string& l : dup_lines) std::printf("    %s\n", l.c_str());
  std::printf("  answered jobs lost                  %6lld\n", static_cast<long long>(lost));
  for (const std::string& l : lost_lines) std::printf("    %s\n", l.c_str());
  std::printf("  jobs nobody submitted               %6lld\n", static_cast<long long>(strangers));
  std::printf("  crashes                             %6zu\n", cluster.crashes().size());
  for (size_t i = 0; i < cluster.crashes().size() && i < 10; ++i) {
    const Crash& c = cluster.crashes()[i];
    std::printf("    %s: %s; last log line: %s\n", c.who.c_str(), c.what.c_str(), c.last_line.c_str());
  }
  if (cluster.crashes().size() > 10) std::printf("    ... %zu more\n", cluster.crashes().size() - 10);
  std::vector<std::string> unexpected_samples;
  const int64_t unexpected = sh.calls.Unexpected(&unexpected_samples);
  std::printf("  unexpected client errors            %6lld\n", static_cast<long long>(unexpected));
  for (const std::string& l : unexpected_samples) std::printf("    %s\n", l.c_str());
  std::printf("  database at the end                 %6.1f MB  (%.1f MB allocated)\n",
              final_db.bytes / 1048576.0, final_db.allocated / 1048576.0);
  std::printf("  wall time                           %6.0f s\n", Now());

  if (!listed_ok) reasons.push_back("the jobs could not be listed after the faults");
  if (calibrated == 0) reasons.push_back("no job completed");
  if (!drained) reasons.push_back("jobs still running after the drain");
  if (calibrated != listed) reasons.push_back(absl::StrCat(listed - calibrated, " jobs not calibrated"));
  if (identical != calibrated) {
    reasons.push_back(absl::StrCat(calibrated - identical, " jobs with statistics unlike a fault-free run"));
  }
  if (duplicates > 0) reasons.push_back(absl::StrCat(duplicates, " duplicate jobs"));
  if (lost > 0) reasons.push_back(absl::StrCat(lost, " answered jobs lost"));
  if (strangers > 0) reasons.push_back(absl::StrCat(strangers, " jobs nobody submitted"));
  if (!cluster.crashes().empty()) reasons.push_back(absl::StrCat(cluster.crashes().size(), " crashes"));
  if (unexpected > 0) reasons.push_back(absl::StrCat(unexpected, " unexpected client errors"));
  for (const DiskPhase& p : phases) {
    if (p.ran && !p.resumed) {
      reasons.push_back(absl::StrCat("the coordinator never took work again after the disk ",
                                     p.name, " phase"));
    }
  }
  if (reasons.empty()) {
    std::printf("PASS\n");
  } else {
    std::string all;
    for (const std::string& r : reasons) all += (all.empty() ? "" : "; ") + r;
    std::printf("FAIL: %s (seed %" PRIu64 ")\n", all.c_str(), f.seed);
    exit_code = 1;
  }
  if (exit_code == 0 && !f.keep) {
    std::error_code ec;
    fs::remove_all(scratch, ec);
  } else {
    std::printf("logs: %s/logs\n", scratch.c_str());
  }
  return exit_code;
}

}  // namespace
}  // namespace qcal::bench

int main(int argc, char** argv) {
  try {
    return qcal::bench::Main(argc, argv);
  } catch (const std::exception& e) {
    if (qcal::bench::g_mounted.load()) ::umount2(qcal::bench::g_mount_point, MNT_DETACH);
    std::fprintf(stderr, "soak_bench: %s\n", e.what());
    return 1;
  }
}
