// What every part of the load test (bench/load_test.cc) shares: its flags, latency
// collection and printing, clock helpers, small file/disk/HTTP/port helpers, /proc
// readers for CPU, load and IO, channel creation, and the few CalibrationService
// client calls it makes.
//
// One benchmark's helpers, not a library. Threading: Latencies may be shared by any
// number of threads; every free function may be called from any thread (each uses
// its own socket, file or channel). Errors: the calls that can fail in a way that
// matters return a Status; the /proc and disk readers return 0 (CpuPressure: -1)
// when the file cannot be read, because they feed side figures, never pass or fail.
#ifndef QCAL_BENCH_LOAD_COMMON_H_
#define QCAL_BENCH_LOAD_COMMON_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::bench {

using Clock = std::chrono::steady_clock;

// Hard cap on any phase, whatever the flags say.
constexpr double kMaxPhaseSeconds = 120;
// The coordinator's default report interval (JobSpec.report_interval_seconds).
constexpr int kDefaultReportIntervalSeconds = 30;

double Seconds(Clock::duration d);
// The wall-clock time `seconds` from now, for gRPC deadlines.
std::chrono::system_clock::time_point DeadlineIn(double seconds);

// ---------------------------------------------------------------- flags

// The command line. The defaults of coordinator_bin and data_dir come from the
// build (QCAL_COORDINATOR_BIN, QCAL_TEST_DATA_DIR, defined for every source file of
// load_test); a count of 0 means "the mode's default" until ApplyDefaults.
struct Flags {
  std::string coordinator_bin = QCAL_COORDINATOR_BIN;
  std::string data_dir = QCAL_TEST_DATA_DIR;
  std::string work_dir;  // default: a fresh folder under the system temp dir
  std::string phase = "all";
  bool quick = false;
  bool keep = false;
  bool metrics = true;
  double phase_seconds = 0;  // 0: per-mode default
  // Control plane.
  int client_threads = 8;
  int watchers = 200;
  int submits = 0, gets = 0, lists = 0;  // per client thread; 0: per-mode default
  int watched_shards = 0;
  // Data plane.
  int small_workers = 8, big_workers = 4;
  int small_reports = 0, big_reports = 0;  // 0: per-mode default
  int report_rows = 4;
};

// Fills the per-mode defaults (quick or full) and caps phase_seconds at
// kMaxPhaseSeconds.
void ApplyDefaults(Flags& f);

// ---------------------------------------------------------------- latencies

struct Summary {
  int64_t count = 0;
  int64_t errors = 0;
  double mean = 0, p50 = 0, p99 = 0, max = 0;  // seconds
  std::vector<std::string> first_errors;       // at most 3
};

// Thread-safe collection of one kind of call's latencies and errors.
class Latencies {
 public:
  void Add(double seconds);
  // Counts an error; the first three are kept verbatim.
  void AddError(const std::string& what);
  void AddError(const grpc::Status& s);
  // Count, errors, mean and nearest-rank p50/p99/max of the latencies so far.
  Summary Summarize() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<double> values_ ABSL_GUARDED_BY(mu_);
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> first_errors_ ABSL_GUARDED_BY(mu_);
};

// Runs `call` (returning grpc::Status) and records its latency or its error.
template <typename Fn>
grpc::Status Timed(Latencies& into, Fn&& call) {
  const auto start = Clock::now();
  grpc::Status s = call();
  if (s.ok()) {
    into.Add(Seconds(Clock::now() - start));
  } else {
    into.AddError(s);
  }
  return s;
}

// One line "name n=... p50 ... p99 ... max ... errors ...", then the kept errors.
void PrintSummary(const std::string& name, const Summary& s);

// ---------------------------------------------------------------- files, disk, HTTP

// The file's contents; empty when it cannot be read.
std::string ReadFile(const std::string& path);
// The last `n` characters of `text`, after "..." when it was cut.
std::string Tail(const std::string& text, size_t n);
// Bytes allocated on disk (st_blocks, so sparse files count what they hold) for a
// file, and for all regular files under a folder.
int64_t DiskBytes(const std::string& path);
int64_t TreeDiskBytes(const std::string& dir);

// A free TCP port on 127.0.0.1 (for --metrics-listen, which cannot report the port it
// bound). Racy in principle; nothing else on this machine competes for it in practice.
absl::StatusOr<int> FreeLoopbackPort();

// GET http://127.0.0.1:port/path (HTTP/1.0, 5 s timeout); returns the body.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// ---------------------------------------------------------------- /proc

// CPU seconds (user + system) of a process.
double ProcessCpuSeconds(pid_t pid);
// Thread name (digits stripped, so pools group) -> CPU seconds, over live threads.
std::map<std::string, double> ThreadCpuSeconds(pid_t pid);
// The 1-minute load average: other work on this machine skews wall-clock figures.
double LoadAverage();
// "some avg10" of /proc/pressure/cpu: the share of the last 10 s in which runnable
// tasks waited for a CPU (-1 when the kernel has no PSI).
double CpuPressure();
// Bytes a process passed to write() (/proc/PID/io wchar: WAL and table files here).
int64_t WrittenBytes(pid_t pid);
// CPU seconds (user + system) of this process so far.
double OwnCpuSeconds();

// ---------------------------------------------------------------- client helpers

// A channel with its own connection (as a separate client process would have).
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address);

// A SubmitJob request for `model` on corpus/sample.jsonl ("packed" sampling when
// `packed`, else the default mode).
v1::SubmitJobRequest JobRequest(const std::string& model, int64_t samples, int64_t seq_len,
                                int shard_size, bool packed, const std::string& name);

// SubmitJob (60 s deadline) and GetJob (30 s), each on a fresh channel; an RPC error
// comes back as INTERNAL naming the call.
absl::StatusOr<v1::Job> Submit(const std::string& address, const v1::SubmitJobRequest& r);
absl::StatusOr<v1::Job> GetJob(const std::string& address, const std::string& id);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_LOAD_COMMON_H_
