#include "client/local_cluster.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"

namespace qcal::client {
namespace {

constexpr absl::Duration kPortFilePoll = absl::Milliseconds(50);

absl::StatusOr<std::string> MakeWorkDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                     "/qcal-run-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a temporary folder ", pattern,
                                            ": ", std::strerror(errno)));
  }
  return pattern;
}

// The address in a complete port file ("host:port" with a non-zero port), or "".
std::string ReadAddress(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  const std::string content(absl::StripAsciiWhitespace(text.str()));
  const size_t colon = content.rfind(':');
  if (colon == std::string::npos || colon == 0) return "";
  int port = 0;
  if (!absl::SimpleAtoi(content.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return "";
  }
  return content;
}

}  // namespace

absl::Status ChildExitedError(ChildProcess& child, const std::string& when) {
  std::string message = absl::StrCat(child.name(), " (pid ", child.pid(), ") ",
                                     child.ExitDescription(), when);
  if (!child.log_file().empty()) {
    const std::string last = LastLogLine(child.log_file());
    if (!last.empty()) absl::StrAppend(&message, ": ", last);
    absl::StrAppend(&message, " (log: ", child.log_file(), ")");
  }
  return absl::UnavailableError(message);
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    LocalClusterOptions options) {
  if (options.workers < 1) return UsageError("--workers must be at least 1");
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(std::move(options)));
  auto work_dir = MakeWorkDir();
  if (!work_dir.ok()) return work_dir.status();
  cluster->work_dir_ = *work_dir;
  cluster->db_dir_ = cluster->options_.db_dir.empty()
                         ? absl::StrCat(cluster->work_dir_, "/db")
                         : cluster->options_.db_dir;
  // On error the destructor stops what started and removes the folder.
  if (absl::Status s = cluster->StartCoordinator(); !s.ok()) return s;
  if (absl::Status s = cluster->StartWorkers(); !s.ok()) return s;
  return cluster;
}

absl::Status LocalCluster::StartCoordinator() {
  const std::string port_file = absl::StrCat(work_dir_, "/coordinator.port");
  SpawnOptions spawn;
  spawn.argv = {options_.coordinator_bin, "--listen", "127.0.0.1:0", "--db", db_dir_};
  for (const std::string& root : options_.data_roots) {
    spawn.argv.push_back("--data-root");
    spawn.argv.push_back(root);
  }
  if (!options_.output_root.empty()) {
    spawn.argv.insert(spawn.argv.end(), {"--output-root", options_.output_root});
  }
  spawn.argv.insert(spawn.argv.end(), {"--port-file", port_file, "--metrics-listen", ""});
  spawn.log_file = absl::StrCat(options_.log_dir, "/coordinator.log");
  auto child = ChildProcess::Spawn(spawn);
  if (!child.ok()) return child.status();
  coordinator_ = *std::move(child);

  const absl::Time deadline = absl::Now() + options_.start_timeout;
  std::string previous;
  while (true) {
    // Accepted when two reads a poll apart agree, in case the file is written in
    // pieces.
    const std::string address = ReadAddress(port_file);
    if (!address.empty() && address == previous) {
      address_ = address;
      return absl::OkStatus();
    }
    previous = address;
    if (!coordinator_->Running()) return ChildExitedError(*coordinator_, " before serving");
    if (InterruptCount() > 0) {
      return InterruptedError("interrupted while the coordinator was starting");
    }
    if (absl::Now() >= deadline) {
      std::string message = absl::StrCat(
          "qcal-coordinator did not write its port file ", port_file, " within ",
          absl::FormatDuration(options_.start_timeout));
      const std::string last = LastLogLine(spawn.log_file);
      if (!last.empty()) absl::StrAppend(&message, "; last log line: ", last);
      absl::StrAppend(&message, " (log: ", spawn.log_file, ")");
      return absl::UnavailableError(message);
    }
    absl::SleepFor(kPortFilePoll);
  }
}

absl::Status LocalCluster::StartWorkers() {
  for (int i = 0; i < options_.workers; ++i) {
    SpawnOptions spawn;
    spawn.argv = {options_.worker_bin, "--coordinator", address_, "--name",
                  absl::StrCat("local-", i)};
    if (options_.threads > 0) {
      spawn.argv.push_back("--threads");
      spawn.argv.push_back(absl::StrCat(options_.threads));
    }
    spawn.log_file = absl::StrCat(options_.log_dir, "/worker-", i, ".log");
    auto child = ChildProcess::Spawn(spawn);
    if (!child.ok()) return child.status();
    workers_.push_back(*std::move(child));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::Health() const {
  if (coordinator_ == nullptr) return absl::UnavailableError("no coordinator");
  if (!coordinator_->Running()) return ChildExitedError(*coordinator_, "");
  ChildProcess* last_exited = nullptr;
  for (const auto& worker : workers_) {
    if (worker->Running()) return absl::OkStatus();
    last_exited = worker.get();
  }
  if (last_exited == nullptr) return absl::UnavailableError("no workers");
  return ChildExitedError(
      *last_exited, absl::StrCat(" (all ", workers_.size(), " workers have exited)"));
}

void LocalCluster::Stop() {
  if (stopped_) return;
  stopped_ = true;
  const int interrupts = InterruptCount();
  const auto hurry = [interrupts] { return InterruptCount() > interrupts; };
  std::vector<ChildProcess*> workers;
  for (const auto& worker : workers_) workers.push_back(worker.get());
  StopAll(workers, options_.stop_grace, hurry);
  if (coordinator_ != nullptr) {
    StopAll({coordinator_.get()}, options_.stop_grace, hurry);
  }
  if (!work_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }
}

LocalCluster::~LocalCluster() { Stop(); }

}  // namespace qcal::client
