#include "bench/load/common.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;

// CPU seconds (user + system) from the text of a /proc/.../stat file.
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

}  // namespace

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

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

void Latencies::Add(double seconds) {
  absl::MutexLock lock(&mu_);
  values_.push_back(seconds);
}

void Latencies::AddError(const std::string& what) {
  absl::MutexLock lock(&mu_);
  ++errors_;
  if (first_errors_.size() < 3) first_errors_.push_back(what);
}

void Latencies::AddError(const grpc::Status& s) {
  AddError(absl::StrCat("code ", s.error_code(), ": ", s.error_message()));
}

Summary Latencies::Summarize() const {
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

void PrintSummary(const std::string& name, const Summary& s) {
  std::printf("  %-26s n=%-6lld p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  errors %lld\n",
              name.c_str(), static_cast<long long>(s.count), s.p50 * 1e3, s.p99 * 1e3, s.max * 1e3,
              static_cast<long long>(s.errors));
  for (const std::string& e : s.first_errors) std::printf("      error: %s\n", e.c_str());
}

// ---------------------------------------------------------------- files, disk, HTTP

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& text, size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
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

// ---------------------------------------------------------------- /proc

double ProcessCpuSeconds(pid_t pid) {
  return CpuSecondsOfStat(ReadFile(absl::StrCat("/proc/", pid, "/stat")));
}

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

double LoadAverage() {
  std::istringstream in(ReadFile("/proc/loadavg"));
  double one = 0;
  in >> one;
  return one;
}

double CpuPressure() {
  const std::string text = ReadFile("/proc/pressure/cpu");
  const size_t at = text.find("avg10=");
  return at == std::string::npos ? -1 : std::strtod(text.c_str() + at + 6, nullptr);
}

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

// ---------------------------------------------------------------- client helpers

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

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

}  // namespace qcal::bench
