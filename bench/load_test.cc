// load_test: how much one real qcal-coordinator absorbs, over loopback gRPC.
//
//   load_test [--quick] [--phase all|control|data|small|7b] [--coordinator-bin PATH] ...
//
// Control plane: client threads make concurrent SubmitJob, GetJob and ListJobs calls
// (a fixed count each) while 200 WatchJob streams follow a job that a fake worker
// leases and completes throughout; prints p50/p99 latency per RPC, the time to a
// stream's first message and the delivery delay of later ones, and fails on any error.
//
// Data plane: fake workers (threads, no model) RegisterWorker, LeaseTask and
// CompleteTask pre-built, pre-serialized reports as fast as the coordinator takes them:
// (a) reports shaped like tests/data/models/llama-small; (b) a synthetic report shaped
// like a 7B llama (32 layers, hidden 4096, intermediate 11008, vocabulary 32000) for a
// model folder whose model.safetensors is a sparse file (a real header, no weights on
// disk). Prints reports/s, MB/s, client-observed CompleteTask latency, the
// coordinator's own qcal_shard_merge_seconds, its CPU per report by thread, and how
// many 7B-scale workers one coordinator absorbs at the default 30 s report interval.
//
// Every loop is bounded in count and in wall time (--phase-seconds, at most 120 s a
// phase). Each phase starts its own coordinator as a child process on 127.0.0.1:0 with
// a temporary database; it is killed at the end, on failure, on SIGINT/SIGTERM, and by
// the kernel if this process dies (PR_SET_PDEATHSIG). Exit status: 0 when every RPC
// succeeded, 1 on any error, 2 on bad flags.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"
#include "proto/qcal/v1/worker.grpc.pb.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Hard cap on any phase, whatever the flags say.
constexpr double kMaxPhaseSeconds = 120;
// The coordinator's default report interval (JobSpec.report_interval_seconds).
constexpr int kDefaultReportIntervalSeconds = 30;
// The 7B goal of the issue: workers one coordinator must absorb.
constexpr double kGoalWorkers = 64;
// Report chunks, as qcal-worker cuts them (worker/service/worker_loop.cc).
constexpr size_t kChunkBytes = 2u << 20;
constexpr char kCompleteTaskMethod[] = "/qcal.v1.WorkerService/CompleteTask";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

// ---------------------------------------------------------------- flags

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

// Fills the per-mode defaults.
void ApplyDefaults(Flags& f) {
  auto pick = [&](int& v, int quick, int full) {
    if (v == 0) v = f.quick ? quick : full;
  };
  pick(f.submits, 4, 60);
  pick(f.gets, 40, 2000);
  pick(f.lists, 8, 400);
  pick(f.watched_shards, 20, 200);
  pick(f.small_reports, 300, 4000);
  pick(f.big_reports, 8, 150);
  if (f.phase_seconds <= 0) f.phase_seconds = f.quick ? 30 : 60;
  f.phase_seconds = std::min(f.phase_seconds, kMaxPhaseSeconds);
}

// ---------------------------------------------------------------- latencies

struct Summary {
  int64_t count = 0;
  int64_t errors = 0;
  double mean = 0, p50 = 0, p99 = 0, max = 0;  // seconds
  std::vector<std::string> first_errors;
};

// Thread-safe collection of one kind of call's latencies and errors.
class Latencies {
 public:
  void Add(double seconds) {
    absl::MutexLock lock(&mu_);
    values_.push_back(seconds);
  }
  void AddError(const std::string& what) {
    absl::MutexLock lock(&mu_);
    ++errors_;
    if (first_errors_.size() < 3) first_errors_.push_back(what);
  }
  void AddError(const grpc::Status& s) {
    AddError(absl::StrCat("code ", s.error_code(), ": ", s.error_message()));
  }
  Summary Summarize() const {
    absl::MutexLock lock(&mu_);
    Summary s;
    s.count = static_cast<int64_t>(values_.size());
    s.errors = errors_;
    s.first_errors = first_errors_;
    if (values_.empty()) return s;
    std::vector<double> v = values_;
    std::sort(v.begin(), v.end());
    auto rank = [&](double q) {
      const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
      return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
    };
    double sum = 0;
    for (double x : v) sum += x;
    s.mean = sum / static_cast<double>(v.size());
    s.p50 = rank(0.50);
    s.p99 = rank(0.99);
    s.max = v.back();
    return s;
  }

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

void PrintSummary(const std::string& name, const Summary& s) {
  std::printf("  %-26s n=%-6lld p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  errors %lld\n",
              name.c_str(), static_cast<long long>(s.count), s.p50 * 1e3, s.p99 * 1e3, s.max * 1e3,
              static_cast<long long>(s.errors));
  for (const std::string& e : s.first_errors) std::printf("      error: %s\n", e.c_str());
}

// ---------------------------------------------------------------- the coordinator

// The running coordinator's pid and a note naming the scratch folder, for the signal
// handler (which may only make async-signal-safe calls).
std::atomic<pid_t> g_coordinator_pid{-1};
char g_interrupt_note[1024];
size_t g_interrupt_note_size = 0;

void KillCoordinatorAndExit(int sig) {
  const pid_t pid = g_coordinator_pid.load();
  if (pid > 0) ::kill(pid, SIGKILL);
  if (g_interrupt_note_size > 0) {
    ssize_t ignored = ::write(2, g_interrupt_note, g_interrupt_note_size);
    (void)ignored;
  }
  _exit(128 + sig);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& text, size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// A free TCP port on 127.0.0.1 (for --metrics-listen, which cannot report the port it
// bound). Racy in principle; nothing else on this machine competes for it in practice.
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  if (port <= 0) return absl::InternalError("cannot find a free loopback port");
  return port;
}

// GET http://127.0.0.1:port/path (HTTP/1.0, 5 s timeout); returns the body.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  std::string resp;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[65536];
    for (int i = 0; i < 10000; ++i) {  // bounded: at most 640 MB
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      resp.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t body = resp.find("\r\n\r\n");
  if (body == std::string::npos) return absl::UnavailableError("no HTTP response");
  return resp.substr(body + 4);
}

// CPU seconds (user + system) of a process, or of each of its threads by name.
double CpuSecondsOfStat(const std::string& stat) {
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream in(stat.substr(paren + 2));
  std::vector<std::string> fields;
  std::string tok;
  while (in >> tok && fields.size() < 13) fields.push_back(tok);
  if (fields.size() < 13) return 0;
  // Fields 14 and 15 of proc(5) (utime, stime) are entries 11 and 12 after the name.
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
}

double ProcessCpuSeconds(pid_t pid) {
  return CpuSecondsOfStat(ReadFile(absl::StrCat("/proc/", pid, "/stat")));
}

// Thread name (digits stripped, so pools group) -> CPU seconds, over live threads.
std::map<std::string, double> ThreadCpuSeconds(pid_t pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::string name = ReadFile(e.path().string() + "/comm");
    while (!name.empty() &&
           (name.back() == '\n' || std::isdigit(static_cast<unsigned char>(name.back())))) {
      name.pop_back();
    }
    out[name] += CpuSecondsOfStat(ReadFile(e.path().string() + "/stat"));
  }
  return out;
}

// The 1-minute load average: other work on this machine skews wall-clock figures.
double LoadAverage() {
  std::istringstream in(ReadFile("/proc/loadavg"));
  double one = 0;
  in >> one;
  return one;
}

// "some avg10" of /proc/pressure/cpu: the share of the last 10 s in which runnable
// tasks waited for a CPU (-1 when the kernel has no PSI).
double CpuPressure() {
  const std::string text = ReadFile("/proc/pressure/cpu");
  const size_t at = text.find("avg10=");
  return at == std::string::npos ? -1 : std::strtod(text.c_str() + at + 6, nullptr);
}

// Bytes a process passed to write() (/proc/PID/io wchar: WAL and table files here).
int64_t WrittenBytes(pid_t pid) {
  const std::string text = ReadFile(absl::StrCat("/proc/", pid, "/io"));
  const size_t at = text.find("wchar:");
  return at == std::string::npos ? 0 : std::strtoll(text.c_str() + at + 6, nullptr, 10);
}

double OwnCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// A qcal-coordinator child on 127.0.0.1:0 with its own database; SIGKILLed when
// destroyed if still running. Start it from the main thread: PR_SET_PDEATHSIG fires
// when the thread that forked ends.
class CoordinatorProcess {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      const Flags& flags, const std::string& dir, const std::vector<std::string>& data_roots,
      int metrics_port) {
    fs::create_directories(dir);
    auto p = std::unique_ptr<CoordinatorProcess>(new CoordinatorProcess());
    p->log_ = dir + "/coordinator.log";
    p->metrics_port_ = metrics_port;
    const std::string port_file = dir + "/port";
    std::vector<std::string> argv = {
        flags.coordinator_bin,
        "--listen",
        "127.0.0.1:0",
        "--db",
        dir + "/db",
        "--port-file",
        port_file,
        "--metrics-listen",
        metrics_port > 0 ? absl::StrCat("127.0.0.1:", metrics_port) : std::string()};
    for (const std::string& r : data_roots) {
      argv.push_back("--data-root");
      argv.push_back(r);
    }
    // Everything the child needs is prepared before fork (no allocation after it).
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int log_fd = ::open(p->log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return absl::InternalError(absl::StrCat("cannot open ", p->log_));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      return absl::InternalError("fork failed");
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(1);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(args[0], args.data());
      _exit(127);
    }
    ::close(log_fd);
    p->pid_ = pid;
    g_coordinator_pid.store(pid);
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

  ~CoordinatorProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      g_coordinator_pid.store(-1);
    }
  }
  CoordinatorProcess(const CoordinatorProcess&) = delete;
  CoordinatorProcess& operator=(const CoordinatorProcess&) = delete;

  // SIGTERM (graceful stop), SIGKILL after 20 s. True when it exited with status 0.
  bool Stop() {
    if (pid_ <= 0) return exit_status_ == 0;
    ::kill(pid_, SIGTERM);
    const auto until = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < until && Running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      g_coordinator_pid.store(-1);
      return false;
    }
    return WIFEXITED(exit_status_) && WEXITSTATUS(exit_status_) == 0;
  }

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  int metrics_port() const { return metrics_port_; }
  std::string LogTail() const { return Tail(ReadFile(log_), 3000); }

 private:
  CoordinatorProcess() = default;
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      pid_ = -1;
      g_coordinator_pid.store(-1);
      return false;
    }
    return true;
  }

  pid_t pid_ = -1;
  int exit_status_ = -1;
  int metrics_port_ = 0;
  std::string address_;
  std::string log_;
};

// A channel with its own connection (as a separate client process would have).
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// ---------------------------------------------------------------- reports

// One report's linears, serialized once as CompleteTaskChunk messages without header
// (cut at kChunkBytes like qcal-worker); each task's report is its header followed by
// these, so the coordinator sees exactly the bytes a worker sends.
struct PreparedReport {
  std::vector<grpc::Slice> chunks;
  int64_t bytes = 0;
  int64_t linears = 0;
  int64_t channels = 0;  // input + output channels over all linears
  int64_t rows = 0;
  double mean_buckets = 0;
  int64_t max_buckets = 0;
};

// Statistics of rows shaped like LLM activations: per-channel scales spread
// log-normally, a few massive outlier channels, Gaussian values.
absl::StatusOr<stats::TensorStats> SyntheticStats(int64_t channels, int rows,
                                                  std::mt19937_64& rng) {
  std::lognormal_distribution<float> scale(0.0f, 0.7f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> s(static_cast<size_t>(channels));
  for (float& x : s) x = scale(rng) * (u(rng) < 0.002f ? 50.0f : 1.0f);
  std::vector<float> data(static_cast<size_t>(channels) * static_cast<size_t>(rows));
  for (size_t i = 0; i < data.size(); ++i) data[i] = s[i % s.size()] * normal(rng);
  stats::TensorStats t(channels);
  absl::Status st = t.AddRows(data.data(), rows);
  if (!st.ok()) return st;
  return t;
}

absl::StatusOr<PreparedReport> BuildReport(const std::string& model_dir, int rows, uint64_t seed) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  if (!config.ok()) return config.status();
  std::mt19937_64 rng(seed);
  PreparedReport r;
  r.rows = rows;
  int64_t buckets = 0, tensors = 0;
  v1::CompleteTaskChunk chunk;
  auto flush = [&] {
    const std::string bytes = chunk.SerializeAsString();
    r.bytes += static_cast<int64_t>(bytes.size());
    r.chunks.emplace_back(bytes);
    chunk.Clear();
  };
  for (const LinearModule& l : LinearModules(*config)) {
    v1::LinearStatsProto* p = chunk.add_linears();
    p->set_name(l.name);
    for (const auto& [channels, out] : {std::make_pair(l.in_features, p->mutable_input()),
                                        std::make_pair(l.out_features, p->mutable_output())}) {
      absl::StatusOr<stats::TensorStats> t = SyntheticStats(channels, rows, rng);
      if (!t.ok()) return t.status();
      stats::ToProto(*t, out);
      const int64_t b = static_cast<int64_t>(t->sketch().keys().size());
      buckets += b;
      r.max_buckets = std::max(r.max_buckets, b);
      ++tensors;
      r.channels += channels;
    }
    ++r.linears;
    if (chunk.ByteSizeLong() > kChunkBytes) flush();
  }
  if (chunk.linears_size() > 0) flush();
  r.mean_buckets = tensors ? static_cast<double>(buckets) / static_cast<double>(tensors) : 0;
  return r;
}

// CompleteTask with the header and the prepared chunks, over a generic stub (no
// per-report serialization on this side). Blocks until the call ends.
grpc::Status SendReport(grpc::GenericStub& stub, const v1::CompleteTaskHeader& header,
                        const PreparedReport& report, double timeout_s,
                        v1::CompleteTaskResponse* response, int64_t* bytes_sent) {
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(timeout_s));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, kCompleteTaskMethod, &cq);
  // One operation at a time; each waits for its own completion.
  auto wait = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  void* const tag = reinterpret_cast<void*>(1);
  call->StartCall(tag);
  bool ok = wait();
  v1::CompleteTaskChunk head;
  *head.mutable_header() = header;
  std::vector<grpc::Slice> first = {grpc::Slice(head.SerializeAsString())};
  if (!report.chunks.empty()) first.push_back(report.chunks[0]);
  *bytes_sent = static_cast<int64_t>(first[0].size()) + report.bytes;
  for (size_t i = 0; ok && i < std::max<size_t>(1, report.chunks.size()); ++i) {
    grpc::ByteBuffer buf = i == 0 ? grpc::ByteBuffer(first.data(), first.size())
                                  : grpc::ByteBuffer(&report.chunks[i], 1);
    call->Write(buf, tag);
    ok = wait();
  }
  if (ok) {
    call->WritesDone(tag);
    ok = wait();
  }
  grpc::ByteBuffer out;
  if (ok) {
    call->Read(&out, tag);
    ok = wait();
  }
  grpc::Status status;
  call->Finish(&status, tag);
  wait();
  cq.Shutdown();
  void* t = nullptr;
  bool o = false;
  while (cq.Next(&t, &o)) {
  }
  if (status.ok()) {
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (out.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices)
        bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    if (!response->ParseFromString(bytes)) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "unparsable CompleteTaskResponse");
    }
  }
  return status;
}

// ---------------------------------------------------------------- 7B-shaped model

// A llama model folder shaped like a 7B model: config.json and a model.safetensors
// whose header declares every tensor (BF16, right shape) and whose data is a hole
// (sparse file: ~13.5 GB apparent size, a few KB on disk). Passes CheckModelFiles,
// which validates headers and offsets against the file size and reads no weight.
absl::Status WriteSparse7bModel(const std::string& dir, int64_t* apparent_bytes) {
  fs::create_directories(dir);
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"hidden_size", 4096},
      {"intermediate_size", 11008},
      {"num_hidden_layers", 32},
      {"num_attention_heads", 32},
      {"num_key_value_heads", 32},
      {"vocab_size", 32000},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  absl::StatusOr<ModelConfig> parsed = LoadModelConfig(dir);
  if (!parsed.ok()) return parsed.status();
  nlohmann::ordered_json header;
  uint64_t offset = 0;
  for (const ExpectedTensor& t : ExpectedTensors(*parsed)) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t bytes = numel * 2;  // BF16
    header[t.name] = {
        {"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const std::string path = dir + "/model.safetensors";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const uint64_t len = h.size();  // little-endian on every machine we run on
    f.write(reinterpret_cast<const char*>(&len), sizeof(len));
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  std::error_code ec;
  fs::resize_file(path, 8 + h.size() + offset, ec);  // a hole: no blocks allocated
  if (ec) return absl::InternalError(absl::StrCat("cannot extend ", path, ": ", ec.message()));
  *apparent_bytes = static_cast<int64_t>(8 + h.size() + offset);
  return CheckModelFiles(dir, *parsed);
}

int64_t DiskBytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

int64_t TreeDiskBytes(const std::string& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) n += DiskBytes(it->path().string());
  }
  return n;
}

// ---------------------------------------------------------------- client helpers

v1::SubmitJobRequest JobRequest(const std::string& model, int64_t samples, int64_t seq_len,
                                int shard_size, bool packed, const std::string& name) {
  v1::SubmitJobRequest r;
  v1::JobSpec* s = r.mutable_spec();
  s->set_model(model);
  s->set_corpus("corpus/sample.jsonl");
  s->mutable_sampling()->set_num_samples(samples);
  s->mutable_sampling()->set_seq_len(seq_len);
  if (packed) s->mutable_sampling()->set_mode("packed");
  s->set_shard_size(shard_size);
  s->set_display_name(name);
  return r;
}

absl::StatusOr<v1::Job> Submit(const std::string& address, const v1::SubmitJobRequest& r) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(60));
  v1::Job job;
  grpc::Status s = stub->SubmitJob(&ctx, r, &job);
  if (!s.ok()) return absl::InternalError(absl::StrCat("SubmitJob: ", s.error_message()));
  return job;
}

absl::StatusOr<v1::Job> GetJob(const std::string& address, const std::string& id) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(30));
  v1::GetJobRequest r;
  r.set_job_id(id);
  v1::Job job;
  grpc::Status s = stub->GetJob(&ctx, r, &job);
  if (!s.ok()) return absl::InternalError(absl::StrCat("GetJob: ", s.error_message()));
  return job;
}


// A fake worker's identity and stubs.
struct FakeWorker {
  std::unique_ptr<v1::WorkerService::Stub> stub;
  std::unique_ptr<grpc::GenericStub> generic;
  std::string id;
};

absl::StatusOr<FakeWorker> RegisterFakeWorker(const std::string& address, const std::string& name) {
  FakeWorker w;
  std::shared_ptr<grpc::Channel> channel = NewChannel(address);
  w.stub = v1::WorkerService::NewStub(channel);
  w.generic = std::make_unique<grpc::GenericStub>(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(30));
  v1::RegisterWorkerRequest r;
  r.set_name(name);
  r.set_device("fake");
  v1::RegisterWorkerResponse resp;
  grpc::Status s = w.stub->RegisterWorker(&ctx, r, &resp);
  if (!s.ok()) return absl::InternalError(absl::StrCat("RegisterWorker: ", s.error_message()));
  w.id = resp.worker_id();
  return w;
}

v1::CompleteTaskHeader HeaderFor(const FakeWorker& w, const v1::Task& t, int64_t rows) {
  v1::CompleteTaskHeader h;
  h.set_worker_id(w.id);
  h.set_task_id(t.task_id());
  h.set_lease_id(t.lease_id());
  h.set_samples(t.sample_end() - t.sample_begin());
  h.set_tokens(rows);
  // As a worker reporting at the default interval would: keeps tasks at one shard.
  h.set_compute_seconds(kDefaultReportIntervalSeconds);
  return h;
}

// ---------------------------------------------------------------- control plane

// Counts WatchJob streams' events (callbacks come from gRPC threads).
//
// Delivery delay: only the fake worker changes the watched job, and each of its
// LeaseTask and CompleteTask calls bumps the job's version by exactly one, so the
// version after its k-th call is first_version + 1 + k. The worker stores each call's
// start time (steady clock) before making it; a stream that receives version v
// measures from the start of the call that made v (so the delay includes that call's
// own processing). Versions the server coalesced away are simply not seen.
struct WatchBoard {
  WatchBoard(int streams, int64_t first_version, int changes)
      : total(streams), first_version(first_version), change_start_ns(changes) {}
  const int total;
  const int64_t first_version;                        // the version SubmitJob returned
  std::vector<std::atomic<int64_t>> change_start_ns;  // 0: not made yet
  absl::Mutex mu;
  int opened ABSL_GUARDED_BY(mu) = 0;
  int done ABSL_GUARDED_BY(mu) = 0;
  Latencies open;      // call start -> first message
  Latencies delivery;  // start of the call that made the version -> message received
};

int64_t SteadyNs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool AllOpenedOrDone(WatchBoard* b) {
  b->mu.AssertHeld();
  return b->opened + b->done >= b->total;
}

bool AllDone(WatchBoard* b) {
  b->mu.AssertHeld();
  return b->done >= b->total;
}

// Waits up to `timeout` for `cond` on the board; returns whether it held.
bool AwaitBoard(WatchBoard& board, bool (*cond)(WatchBoard*), absl::Duration timeout) {
  absl::MutexLock lock(&board.mu);
  return board.mu.AwaitWithTimeout(absl::Condition(cond, &board), timeout);
}

class Watcher final : public grpc::ClientReadReactor<v1::Job> {
 public:
  explicit Watcher(WatchBoard* board) : board_(board) {}

  void Start(v1::CalibrationService::Stub* stub, const std::string& job_id,
             std::chrono::system_clock::time_point deadline) {
    request_.set_job_id(job_id);
    context_.set_deadline(deadline);
    start_ = Clock::now();
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&job_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    if (messages_ == 0) {
      board_->open.Add(Seconds(Clock::now() - start_));
      absl::MutexLock lock(&board_->mu);
      ++board_->opened;
    } else {
      const int64_t k = job_.version() - board_->first_version - 1;
      if (k >= 0 && k < static_cast<int64_t>(board_->change_start_ns.size())) {
        const int64_t made = board_->change_start_ns[static_cast<size_t>(k)].load();
        if (made > 0)
          board_->delivery.Add(1e-9 * static_cast<double>(SteadyNs(Clock::now()) - made));
      }
    }
    if (job_.version() <= last_version_) ++out_of_order_;
    last_version_ = job_.version();
    last_state_ = job_.state();
    ++messages_;
    StartRead(&job_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    absl::MutexLock lock(&board_->mu);
    ++board_->done;
  }

  // Read after the board counted this stream done.
  const grpc::Status& status() const { return status_; }
  int64_t messages() const { return messages_; }
  int64_t out_of_order() const { return out_of_order_; }
  v1::JobState last_state() const { return last_state_; }

 private:
  WatchBoard* board_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::Job job_;
  Clock::time_point start_;
  grpc::Status status_;
  int64_t messages_ = 0, out_of_order_ = 0, last_version_ = -1;
  v1::JobState last_state_ = v1::JOB_STATE_UNSPECIFIED;
};

struct ControlResult {
  bool ran = false;
  int64_t errors = 0;
  Summary submit, get, list, watch_open, watch_delivery, worker_complete;
  int watchers = 0;
  int64_t watch_messages = 0;
  double seconds = 0;
  double load_before = 0, load_after = 0;  // 1-minute load average of the machine
};

// One client thread: its Submit/Get/List calls in a seeded random order.
void ClientThread(int index, const std::string& address, const Flags& f,
                  const std::string& watched_id, Clock::time_point deadline, Latencies* submit,
                  Latencies* get, Latencies* list, std::atomic<int64_t>* unfinished) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  std::vector<int> ops;
  ops.insert(ops.end(), f.submits, 0);
  ops.insert(ops.end(), f.gets, 1);
  ops.insert(ops.end(), f.lists, 2);
  std::mt19937 rng(static_cast<unsigned>(index) + 1);
  std::shuffle(ops.begin(), ops.end(), rng);
  std::vector<std::string> mine = {watched_id};
  for (size_t i = 0; i < ops.size(); ++i) {
    if (Clock::now() >= deadline) {
      unfinished->fetch_add(static_cast<int64_t>(ops.size() - i));
      return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(30));
    if (ops[i] == 0) {
      v1::Job job;
      const v1::SubmitJobRequest r = JobRequest("models/llama-tiny", 4, 32, 4, /*packed=*/false,
                                                absl::StrCat("load-", index, "-", i));
      if (Timed(*submit, [&] { return stub->SubmitJob(&ctx, r, &job); }).ok()) {
        mine.push_back(job.id());
      }
    } else if (ops[i] == 1) {
      v1::GetJobRequest r;
      r.set_job_id(mine[std::uniform_int_distribution<size_t>(0, mine.size() - 1)(rng)]);
      v1::Job job;
      Timed(*get, [&] { return stub->GetJob(&ctx, r, &job); });
    } else {
      v1::ListJobsRequest r;
      r.set_page_size(50);
      if (i % 2) r.set_state(v1::JOB_PENDING);
      v1::ListJobsResponse resp;
      Timed(*list, [&] { return stub->ListJobs(&ctx, r, &resp); });
    }
  }
}

ControlResult RunControlPlane(const Flags& f, const std::string& work) {
  ControlResult res;
  res.ran = true;
  std::printf(
      "\n== control plane: %d client threads x (%d SubmitJob, %d GetJob, %d ListJobs), "
      "%d WatchJob streams ==\n",
      f.client_threads, f.submits, f.gets, f.lists, f.watchers);
  auto fail = [&](const std::string& what) {
    std::printf("  FAILED: %s\n", what.c_str());
    ++res.errors;
    return res;
  };
  auto coordinator = CoordinatorProcess::Start(f, work + "/control", {f.data_dir}, 0);
  if (!coordinator.ok()) return fail(std::string(coordinator.status().message()));
  const std::string address = (*coordinator)->address();
  std::printf("  coordinator pid %d on %s\n", (*coordinator)->pid(), address.c_str());
  res.load_before = LoadAverage();

  auto report = BuildReport(f.data_dir + "/models/llama-tiny", 10, 1);
  if (!report.ok()) return fail(std::string(report.status().message()));
  auto watched = Submit(address, JobRequest("models/llama-tiny", f.watched_shards, 32, 1,
                                            /*packed=*/true, "watched"));
  if (!watched.ok()) return fail(std::string(watched.status().message()));
  const std::string watched_id = watched->id();

  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::microseconds(static_cast<int64_t>(f.phase_seconds * 1e6));
  const auto watch_deadline = DeadlineIn(f.phase_seconds + 15);

  // The watchers, spread over a few connections.
  WatchBoard board(f.watchers, watched->version(), 2 * f.watched_shards);
  std::vector<std::unique_ptr<v1::CalibrationService::Stub>> watch_stubs;
  for (int i = 0; i < 4; ++i)
    watch_stubs.push_back(v1::CalibrationService::NewStub(NewChannel(address)));
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < f.watchers; ++i) {
    watchers.push_back(std::make_unique<Watcher>(&board));
    watchers.back()->Start(watch_stubs[i % watch_stubs.size()].get(), watched_id, watch_deadline);
  }
  AwaitBoard(board, AllOpenedOrDone, absl::Seconds(30));

  // The fake worker: leases and completes the watched job's shards one by one, paced
  // so changes keep coming while the clients run; the last shard waits for them.
  std::atomic<bool> clients_done{false};
  Latencies worker_complete, worker_lease;
  std::thread worker([&] {
    auto w = RegisterFakeWorker(address, "control-fake-worker");
    if (!w.ok()) {
      worker_complete.AddError(std::string(w.status().message()));
      return;
    }
    size_t changes = 0;  // calls that changed the watched job so far
    auto mark_change = [&] {
      if (changes < board.change_start_ns.size()) {
        board.change_start_ns[changes].store(SteadyNs(Clock::now()));
      }
      ++changes;
    };
    for (int k = 0; k < f.watched_shards && Clock::now() < deadline; ++k) {
      if (k == f.watched_shards - 1) {
        while (!clients_done.load() && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      } else if (!clients_done.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(DeadlineIn(30));
      v1::LeaseTaskRequest lr;
      lr.set_worker_id(w->id);
      lr.set_loaded_model(watched->resolved_model());
      v1::LeaseTaskResponse lease;
      mark_change();
      if (!Timed(worker_lease, [&] { return w->stub->LeaseTask(&ctx, lr, &lease); }).ok()) continue;
      if (!lease.has_task() || lease.task().job_id() != watched_id) {
        worker_lease.AddError(absl::StrCat("LeaseTask gave no task of the watched job (got \"",
                                           lease.task().job_id(), "\")"));
        break;
      }
      v1::CompleteTaskResponse resp;
      int64_t sent = 0;
      mark_change();
      Timed(worker_complete, [&] {
        return SendReport(*w->generic, HeaderFor(*w, lease.task(), report->rows), *report, 30,
                          &resp, &sent);
      });
    }
  });

  Latencies submit, get, list;
  std::atomic<int64_t> unfinished{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < f.client_threads; ++i) {
    clients.emplace_back(ClientThread, i, address, std::cref(f), watched_id, deadline, &submit,
                         &get, &list, &unfinished);
  }
  for (std::thread& t : clients) t.join();
  const double client_seconds = Seconds(Clock::now() - start);
  clients_done.store(true);
  worker.join();

  // The job is final: every stream should end by itself now.
  bool all_done = AwaitBoard(board, AllDone, absl::Seconds(15));
  if (!all_done) {
    for (auto& w : watchers) w->Cancel();
    all_done = AwaitBoard(board, AllDone, absl::Seconds(15));
  }
  res.seconds = Seconds(Clock::now() - start);
  res.load_after = LoadAverage();

  res.submit = submit.Summarize();
  res.get = get.Summarize();
  res.list = list.Summarize();
  res.watch_open = board.open.Summarize();
  res.watch_delivery = board.delivery.Summarize();
  Summary wc = worker_complete.Summarize();
  Summary wl = worker_lease.Summarize();
  res.worker_complete = wc;
  res.errors += res.submit.errors + res.get.errors + res.list.errors + wc.errors + wl.errors;
  res.watchers = f.watchers;

  int bad_streams = 0, reordered = 0;
  int64_t min_messages = INT64_MAX;
  std::string first_bad;
  if (!all_done) {
    ++res.errors;
    std::printf("  FAILED: WatchJob streams did not end; leaking their reactors\n");
    for (auto& w : watchers) w.release();  // gRPC may still call them
  } else {
    for (const auto& w : watchers) {
      res.watch_messages += w->messages();
      min_messages = std::min(min_messages, w->messages());
      reordered += w->out_of_order() > 0;
      const bool good =
          w->status().ok() && w->last_state() == v1::JOB_CALIBRATED && w->messages() >= 2;
      if (!good) {
        ++bad_streams;
        if (first_bad.empty()) {
          first_bad =
              absl::StrCat("status ", w->status().error_code(), " \"", w->status().error_message(),
                           "\", last state ", v1::JobState_Name(w->last_state()), ", ",
                           w->messages(), " messages");
        }
      }
    }
  }
  res.errors += bad_streams + reordered;
  auto final_job = GetJob(address, watched_id);
  if (!final_job.ok() || final_job->state() != v1::JOB_CALIBRATED ||
      final_job->progress().samples_done() != f.watched_shards) {
    ++res.errors;
    std::printf("  FAILED: watched job not CALIBRATED with %d samples: %s\n", f.watched_shards,
                final_job.ok() ? final_job->ShortDebugString().c_str()
                               : std::string(final_job.status().message()).c_str());
  }
  if (unfinished.load() > 0) {
    ++res.errors;
    std::printf("  FAILED: %lld client calls not made within the %.0f s cap\n",
                static_cast<long long>(unfinished.load()), f.phase_seconds);
  }

  PrintSummary("SubmitJob", res.submit);
  PrintSummary("GetJob", res.get);
  PrintSummary("ListJobs (page 50)", res.list);
  PrintSummary("WatchJob first message", res.watch_open);
  PrintSummary("WatchJob change->stream", res.watch_delivery);
  PrintSummary("fake worker LeaseTask", wl);
  PrintSummary("fake worker CompleteTask", wc);
  const int64_t calls = res.submit.count + res.get.count + res.list.count;
  std::printf("  client calls: %lld in %.2f s = %.0f calls/s (%d threads)\n",
              static_cast<long long>(calls), client_seconds,
              static_cast<double>(calls) / client_seconds, f.client_threads);
  std::printf(
      "  WatchJob: %d streams, %lld messages (at least %lld per stream), %d bad streams, "
      "%d with versions out of order%s%s\n",
      f.watchers, static_cast<long long>(res.watch_messages),
      static_cast<long long>(min_messages == INT64_MAX ? 0 : min_messages), bad_streams, reordered,
      first_bad.empty() ? "" : "; first bad: ", first_bad.c_str());
  std::printf("  machine: %u cores, load average (1 min) %.1f before, %.1f after\n",
              std::thread::hardware_concurrency(), res.load_before, res.load_after);
  if (!(*coordinator)->Stop()) {
    ++res.errors;
    std::printf("  FAILED: the coordinator did not stop cleanly:\n%s\n",
                (*coordinator)->LogTail().c_str());
  }
  std::printf("  control plane: %s (%lld errors)\n", res.errors == 0 ? "OK" : "FAILED",
              static_cast<long long>(res.errors));
  return res;
}

// ---------------------------------------------------------------- data plane

struct DataResult {
  bool ran = false;
  std::string name;
  int64_t errors = 0;
  int64_t reports = 0;
  int workers = 0;
  double report_mb = 0;
  double mean_buckets = 0;
  int64_t max_buckets = 0;
  double window_s = 0;
  double reports_per_s = 0, mb_per_s = 0;
  Summary complete, lease, probe;
  double server_merge_mean = -1;       // qcal_shard_merge_seconds sum / count
  std::string server_merge_p99 = "?";  // bucket bound holding the 99th percentile
  double coordinator_cpu_s = 0, own_cpu_s = 0;
  std::vector<std::pair<std::string, double>> threads;  // CPU s by thread name, descending
  double readback_s = -1;
  double db_disk_mb = 0;
  double load_before = 0, load_after = 0;  // 1-minute load average of the machine
  double cpu_pressure = -1;                // /proc/pressure/cpu some avg10 at the end
  double written_mb = 0;                   // the coordinator's write() bytes in the window
};

// Reads qcal_shard_merge_seconds from the coordinator's /metrics.
void ReadMergeMetric(int port, DataResult* r) {
  absl::StatusOr<std::string> text = HttpGet(port, "/metrics");
  if (!text.ok()) return;
  double sum = 0, count = 0;
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative)
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t space = line.rfind(' ');
    if (line.rfind("qcal_shard_merge_seconds", 0) != 0 || space == std::string::npos) continue;
    const double v = std::strtod(line.c_str() + space + 1, nullptr);
    if (line.rfind("qcal_shard_merge_seconds_sum", 0) == 0) sum = v;
    if (line.rfind("qcal_shard_merge_seconds_count", 0) == 0) count = v;
    const size_t le = line.find("le=\"");
    if (line.rfind("qcal_shard_merge_seconds_bucket", 0) == 0 && le != std::string::npos) {
      const std::string bound = line.substr(le + 4, line.find('"', le + 4) - le - 4);
      buckets.emplace_back(bound == "+Inf" ? INFINITY : std::strtod(bound.c_str(), nullptr), v);
    }
  }
  if (count <= 0) return;
  r->server_merge_mean = sum / count;
  std::sort(buckets.begin(), buckets.end());
  for (const auto& [le, cumulative] : buckets) {
    if (cumulative >= 0.99 * count) {
      r->server_merge_p99 = std::isinf(le) ? "> 10 s" : absl::StrCat("<= ", le * 1e3, " ms");
      break;
    }
  }
}

// Every linear's input count must be rows * reports (each report merged exactly once).
// Times the read, which makes RocksDB merge every pending operand.
void ReadBack(const std::string& address, const std::string& job_id, const PreparedReport& report,
              int64_t reports, double timeout_s, DataResult* r) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(timeout_s));
  v1::GetJobStatsRequest req;
  req.set_job_id(job_id);
  req.set_allow_partial(true);
  const auto start = Clock::now();
  auto reader = stub->GetJobStats(&ctx, req);
  v1::JobStatsChunk chunk;
  int64_t linears = 0, wrong = 0;
  while (reader->Read(&chunk)) {
    for (const v1::LinearStatsProto& l : chunk.linears()) {
      ++linears;
      wrong += l.input().count() != report.rows * reports;
    }
  }
  grpc::Status s = reader->Finish();
  r->readback_s = Seconds(Clock::now() - start);
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::printf("  note: reading the statistics back did not finish within %.0f s\n", timeout_s);
    r->readback_s = -1;
  } else if (!s.ok() || linears != report.linears || wrong != 0) {
    ++r->errors;
    std::printf(
        "  FAILED: read-back: status \"%s\", %lld linears (want %lld), %lld with a count "
        "other than %lld\n",
        s.error_message().c_str(), static_cast<long long>(linears),
        static_cast<long long>(report.linears), static_cast<long long>(wrong),
        static_cast<long long>(report.rows * reports));
  }
}

DataResult RunDataPlane(const Flags& f, const std::string& work, const std::string& name,
                        const std::string& model, const std::vector<std::string>& roots,
                        int workers, int max_reports, uint64_t seed) {
  DataResult res;
  res.ran = true;
  res.name = name;
  res.workers = workers;
  std::printf("\n== data plane: %s reports, %d fake workers, at most %d reports / %.0f s ==\n",
              name.c_str(), workers, max_reports, f.phase_seconds);
  auto fail = [&](const std::string& what) {
    std::printf("  FAILED: %s\n", what.c_str());
    ++res.errors;
    return res;
  };
  const std::string model_dir = fs::path(model).is_absolute() ? model : f.data_dir + "/" + model;
  const auto build_start = Clock::now();
  auto report = BuildReport(model_dir, f.report_rows, seed);
  if (!report.ok()) return fail(std::string(report.status().message()));
  res.report_mb = static_cast<double>(report->bytes) / 1e6;
  res.mean_buckets = report->mean_buckets;
  res.max_buckets = report->max_buckets;
  std::printf(
      "  report: %lld linears, %lld channels, %d rows, sketch buckets mean %.0f max %lld, "
      "%.2f MB in %zu chunks (built in %.1f s)\n",
      static_cast<long long>(report->linears), static_cast<long long>(report->channels),
      f.report_rows, report->mean_buckets, static_cast<long long>(report->max_buckets),
      res.report_mb, report->chunks.size(), Seconds(Clock::now() - build_start));

  int metrics_port = 0;
  if (f.metrics) {
    auto p = FreeLoopbackPort();
    if (p.ok()) metrics_port = *p;
  }
  const std::string dir = work + "/data-" + name;
  auto coordinator = CoordinatorProcess::Start(f, dir, roots, metrics_port);
  if (!coordinator.ok()) return fail(std::string(coordinator.status().message()));
  const std::string address = (*coordinator)->address();
  const pid_t pid = (*coordinator)->pid();
  std::printf("  coordinator pid %d on %s\n", pid, address.c_str());
  auto job = Submit(address, JobRequest(model, max_reports, 512, 1, /*packed=*/true, name));
  if (!job.ok()) return fail(std::string(job.status().message()));

  std::vector<FakeWorker> fakes;
  for (int i = 0; i < workers; ++i) {
    auto w = RegisterFakeWorker(address, absl::StrCat(name, "-", i));
    if (!w.ok()) return fail(std::string(w.status().message()));
    fakes.push_back(std::move(*w));
  }

  Latencies complete, lease, probe;
  std::atomic<int64_t> ok_reports{0}, bytes{0};
  std::atomic<bool> finished{false}, workers_done{false};
  const auto threads_before = ThreadCpuSeconds(pid);
  const double cpu_before = ProcessCpuSeconds(pid), own_before = OwnCpuSeconds();
  const int64_t written_before = WrittenBytes(pid);
  res.load_before = LoadAverage();
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::microseconds(static_cast<int64_t>(f.phase_seconds * 1e6));
  auto run = [&](FakeWorker* w) {
    while (!finished.load() && Clock::now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(DeadlineIn(30));
      v1::LeaseTaskRequest lr;
      lr.set_worker_id(w->id);
      lr.set_loaded_model(job->resolved_model());
      v1::LeaseTaskResponse l;
      if (!Timed(lease, [&] { return w->stub->LeaseTask(&ctx, lr, &l); }).ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      if (!l.has_task()) {  // all shards leased: the others are finishing
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      v1::CompleteTaskResponse resp;
      int64_t sent = 0;
      const grpc::Status s = Timed(complete, [&] {
        return SendReport(*w->generic, HeaderFor(*w, l.task(), report->rows), *report,
                          kMaxPhaseSeconds, &resp, &sent);
      });
      if (s.ok()) {
        ok_reports.fetch_add(1);
        bytes.fetch_add(sent);
        if (v1::IsFinalJobState(resp.job_state())) finished.store(true);
      }
    }
  };
  std::vector<std::thread> threads;
  for (FakeWorker& w : fakes) threads.emplace_back(run, &w);
  // A client polling GetJob every 100 ms while reports merge: what users see.
  std::thread prober([&] {
    auto stub = v1::CalibrationService::NewStub(NewChannel(address));
    while (!workers_done.load()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(DeadlineIn(30));
      v1::GetJobRequest r;
      r.set_job_id(job->id());
      v1::Job j;
      Timed(probe, [&] { return stub->GetJob(&ctx, r, &j); });
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  for (std::thread& t : threads) t.join();
  workers_done.store(true);
  prober.join();
  res.window_s = Seconds(Clock::now() - start);
  res.load_after = LoadAverage();
  res.cpu_pressure = CpuPressure();
  res.written_mb = static_cast<double>(WrittenBytes(pid) - written_before) / 1e6;
  res.coordinator_cpu_s = ProcessCpuSeconds(pid) - cpu_before;
  res.own_cpu_s = OwnCpuSeconds() - own_before;
  std::map<std::string, double> by_thread = ThreadCpuSeconds(pid);
  for (auto& [thread, s] : by_thread) {
    auto it = threads_before.find(thread);
    s -= it == threads_before.end() ? 0 : it->second;
  }
  res.threads.assign(by_thread.begin(), by_thread.end());
  std::sort(res.threads.begin(), res.threads.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });

  res.reports = ok_reports.load();
  res.complete = complete.Summarize();
  res.lease = lease.Summarize();
  res.probe = probe.Summarize();
  res.errors += res.complete.errors + res.lease.errors + res.probe.errors;
  res.reports_per_s = static_cast<double>(res.reports) / res.window_s;
  res.mb_per_s = static_cast<double>(bytes.load()) / 1e6 / res.window_s;
  if (metrics_port > 0) ReadMergeMetric(metrics_port, &res);

  auto final_job = GetJob(address, job->id());
  if (!final_job.ok() || final_job->progress().samples_done() != res.reports) {
    ++res.errors;
    std::printf("  FAILED: the job does not count %lld merged samples: %s\n",
                static_cast<long long>(res.reports),
                final_job.ok() ? final_job->progress().ShortDebugString().c_str()
                               : std::string(final_job.status().message()).c_str());
  }
  ReadBack(address, job->id(), *report, res.reports, f.phase_seconds, &res);
  res.db_disk_mb = static_cast<double>(TreeDiskBytes(dir + "/db")) / 1e6;

  PrintSummary("LeaseTask", res.lease);
  PrintSummary("CompleteTask (client)", res.complete);
  PrintSummary("GetJob meanwhile (10/s)", res.probe);
  std::printf("  %lld reports in %.2f s: %.2f reports/s, %.1f MB/s\n",
              static_cast<long long>(res.reports), res.window_s, res.reports_per_s, res.mb_per_s);
  if (res.server_merge_mean >= 0) {
    std::printf("  coordinator qcal_shard_merge_seconds: mean %.2f ms, p99 %s\n",
                res.server_merge_mean * 1e3, res.server_merge_p99.c_str());
  }
  std::printf("  CPU: coordinator %.2f s (%.1f ms/report, %.0f%% of one core), load_test %.2f s\n",
              res.coordinator_cpu_s,
              1e3 * res.coordinator_cpu_s / std::max<int64_t>(1, res.reports),
              100 * res.coordinator_cpu_s / res.window_s, res.own_cpu_s);
  std::printf(
      "  machine: %u cores, load average (1 min) %.1f before, %.1f after; CPU pressure %.0f%%\n",
      std::thread::hardware_concurrency(), res.load_before, res.load_after, res.cpu_pressure);
  std::printf("  coordinator write(): %.0f MB in the window (%.1f x the reports' bytes)\n",
              res.written_mb, res.written_mb / std::max(1e-9, res.mb_per_s * res.window_s));
  std::printf("  coordinator CPU by thread:");
  for (size_t i = 0; i < res.threads.size() && i < 6; ++i) {
    if (res.threads[i].second < 0.005) break;
    std::printf(" %s %.2f s;", res.threads[i].first.c_str(), res.threads[i].second);
  }
  std::printf("\n");
  if (res.readback_s >= 0) {
    std::printf(
        "  read-back of the merged statistics (GetJobStats, merges pending operands): "
        "%.2f s\n",
        res.readback_s);
  }
  std::printf("  database on disk: %.0f MB\n", res.db_disk_mb);
  std::printf(
      "  at the default %d s report interval one coordinator absorbs %.0f workers "
      "with %s-shaped reports\n",
      kDefaultReportIntervalSeconds, res.reports_per_s * kDefaultReportIntervalSeconds,
      name.c_str());
  if (!(*coordinator)->Stop()) {
    ++res.errors;
    std::printf("  FAILED: the coordinator did not stop cleanly:\n%s\n",
                (*coordinator)->LogTail().c_str());
  }
  if (!f.keep) {
    std::error_code ec;
    fs::remove_all(dir + "/db", ec);  // can be gigabytes
  }
  return res;
}

// ---------------------------------------------------------------- main

void PrintTable(const ControlResult& c, const std::vector<DataResult>& data) {
  std::printf("\n== summary ==\n");
  if (c.ran) {
    std::printf("control plane                     calls     p50 ms    p99 ms  errors\n");
    auto row = [](const char* name, const Summary& s) {
      std::printf("  %-30s %7lld %10.2f %9.2f %7lld\n", name, static_cast<long long>(s.count),
                  s.p50 * 1e3, s.p99 * 1e3, static_cast<long long>(s.errors));
    };
    row("SubmitJob", c.submit);
    row("GetJob", c.get);
    row("ListJobs", c.list);
    row(absl::StrCat("WatchJob open (", c.watchers, " streams)").c_str(), c.watch_open);
    row("WatchJob change->stream", c.watch_delivery);
    std::printf("  control plane errors: %lld (machine load average %.1f)\n",
                static_cast<long long>(c.errors), c.load_after);
  }
  if (!data.empty()) {
    std::printf(
        "data plane       report MB  workers  reports  reports/s     MB/s  mean ms   p99 ms"
        "  server ms  coord ms/rep  absorbs@30s  errors  load1\n");
    for (const DataResult& d : data) {
      std::printf(
          "  %-14s %9.2f %8d %8lld %10.2f %8.1f %8.1f %8.1f %10.1f %13.1f %12.0f %7lld %6.1f\n",
          d.name.c_str(), d.report_mb, d.workers, static_cast<long long>(d.reports),
          d.reports_per_s, d.mb_per_s, d.complete.mean * 1e3, d.complete.p99 * 1e3,
          d.server_merge_mean * 1e3, 1e3 * d.coordinator_cpu_s / std::max<int64_t>(1, d.reports),
          d.reports_per_s * kDefaultReportIntervalSeconds, static_cast<long long>(d.errors),
          d.load_after);
    }
    for (const DataResult& d : data) {
      if (d.name != "7b") continue;
      const double n = d.reports_per_s * kDefaultReportIntervalSeconds;
      std::printf(
          "one coordinator absorbs %.0f 7B-scale workers at the default %d s report "
          "interval (goal >= %.0f): %s\n",
          n, kDefaultReportIntervalSeconds, kGoalWorkers, n >= kGoalWorkers ? "MET" : "NOT MET");
    }
  }
}

int Main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows when piped to a file
  CLI::App app{"load_test: one qcal-coordinator under control- and data-plane load (loopback)"};
  Flags f;
  app.add_option("--coordinator-bin", f.coordinator_bin, "qcal-coordinator to start")
      ->capture_default_str();
  app.add_option("--data-dir", f.data_dir, "Data root with models/ and corpus/")
      ->capture_default_str();
  app.add_option("--work-dir", f.work_dir, "Scratch folder (default: a new one in the temp dir)");
  app.add_option("--phase", f.phase, "all, control, data, small or 7b")
      ->check(CLI::IsMember({"all", "control", "data", "small", "7b"}))
      ->capture_default_str();
  app.add_flag("--quick", f.quick, "Small counts (smoke run)");
  app.add_flag("--keep", f.keep, "Keep the scratch folder (logs, the 7B model folder)");
  bool no_metrics = false;
  app.add_flag("--no-metrics", no_metrics, "Do not serve and read the coordinator's /metrics");
  app.add_option("--phase-seconds", f.phase_seconds, "Wall-time cap per phase (<= 120)");
  app.add_option("--client-threads", f.client_threads, "Control-plane client threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--watchers", f.watchers, "Concurrent WatchJob streams")
      ->check(CLI::Range(1, 2000))
      ->capture_default_str();
  app.add_option("--submits", f.submits,
                 "SubmitJob calls per client thread (0: the mode's default)")
      ->check(CLI::Range(0, 100));
  app.add_option("--gets", f.gets, "GetJob calls per client thread (0: the mode's default)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--lists", f.lists, "ListJobs calls per client thread (0: the mode's default)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--watched-shards", f.watched_shards, "Shards of the watched job")
      ->check(CLI::Range(1, 10000));
  app.add_option("--small-workers", f.small_workers, "Fake workers, llama-small reports")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--small-reports", f.small_reports, "Report cap, llama-small")
      ->check(CLI::Range(1, 100000));
  app.add_option("--workers-7b", f.big_workers, "Fake workers, 7B-shaped reports")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--reports-7b", f.big_reports, "Report cap, 7B-shaped")
      ->check(CLI::Range(1, 2000));
  app.add_option("--report-rows", f.report_rows, "Rows (tokens) behind each synthetic report")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  f.metrics = !no_metrics;
  ApplyDefaults(f);
  if (f.submits * f.client_threads > 900) {
    std::fprintf(stderr,
                 "load_test: at most 900 submits in all (the coordinator's 1000 active jobs)\n");
    return 2;
  }
  const bool made_work = f.work_dir.empty();
  if (made_work) {
    f.work_dir = (fs::temp_directory_path() / absl::StrCat("qcal-load-", ::getpid())).string();
  }
  const std::string note =
      absl::StrCat("\nload_test: interrupted; the coordinator was killed; the scratch folder ",
                   f.work_dir, " is left behind (it may hold gigabytes)\n");
  g_interrupt_note_size = std::min(note.size(), sizeof(g_interrupt_note));
  std::memcpy(g_interrupt_note, note.data(), g_interrupt_note_size);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, KillCoordinatorAndExit);
  ::signal(SIGPIPE, SIG_IGN);
  fs::create_directories(f.work_dir);
  std::printf("load_test: coordinator %s, data %s, scratch %s, %s mode, cap %.0f s per phase\n",
              f.coordinator_bin.c_str(), f.data_dir.c_str(), f.work_dir.c_str(),
              f.quick ? "quick" : "full", f.phase_seconds);

  ControlResult control;
  std::vector<DataResult> data;
  int64_t errors = 0;
  if (f.phase == "all" || f.phase == "control") {
    control = RunControlPlane(f, f.work_dir);
    errors += control.errors;
  }
  if (f.phase == "all" || f.phase == "data" || f.phase == "small") {
    data.push_back(RunDataPlane(f, f.work_dir, "llama-small", "models/llama-small", {f.data_dir},
                                f.small_workers, f.small_reports, 2));
    errors += data.back().errors;
  }
  if (f.phase == "all" || f.phase == "data" || f.phase == "7b") {
    const std::string root = f.work_dir + "/root7b";
    const std::string model = root + "/models/llama-7b-shape";
    int64_t apparent = 0;
    const absl::Status st = WriteSparse7bModel(model, &apparent);
    if (!st.ok()) {
      std::printf("\nFAILED: cannot write the 7B-shaped model: %s\n",
                  std::string(st.message()).c_str());
      ++errors;
    } else {
      std::printf(
          "\n7B-shaped model folder %s: model.safetensors %.1f GB apparent, %.0f KB on disk\n",
          model.c_str(), static_cast<double>(apparent) / 1e9,
          static_cast<double>(DiskBytes(model + "/model.safetensors")) / 1e3);
      // The corpus resolves against the first root; the model is absolute in the second.
      data.push_back(RunDataPlane(f, f.work_dir, "7b", fs::canonical(model).string(),
                                  {f.data_dir, root}, f.big_workers, f.big_reports, 3));
      errors += data.back().errors;
    }
  }
  PrintTable(control, data);
  std::printf("%s: %lld errors\n", errors == 0 ? "PASS" : "FAIL", static_cast<long long>(errors));
  if (made_work && !f.keep) {
    std::error_code ec;
    fs::remove_all(f.work_dir, ec);
  }
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qcal::bench

int main(int argc, char** argv) {
  try {
    return qcal::bench::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_test: %s\n", e.what());
    return 1;
  }
}
