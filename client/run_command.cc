// run: calibrate on this machine with a private coordinator and workers.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "client/job_spec_flags.h"
#include "client/job_stats.h"
#include "client/job_watch.h"
#include "client/json_output.h"
#include "client/local_cluster.h"
#include "client/process.h"
#include "common/stats/outputs.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxWorkers = 256;
constexpr double kCancelTimeoutSeconds = 2;

struct RunFlags {
  JobSpecFlags spec;
  int workers = 2;
  std::string db;
  std::string out = "qcal-out";
  std::string coordinator_bin;
  std::string worker_bin;
  int threads = 0;
};

std::string Absolute(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  return (ec ? fs::path(path) : p).lexically_normal().string();
}

// The folder that holds `path`, to serve as a coordinator data root; never "/".
absl::StatusOr<std::string> DataRootFor(const std::string& path, const char* flag) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty() || parent == parent.root_path()) {
    return UsageError(absl::StrCat(flag, " ", path,
                                   " lies directly under /; move it into a folder"));
  }
  return parent.string();
}

// Checks the inputs locally (a clear error before any process starts) and makes
// the paths absolute.
absl::Status PrepareInputs(RunFlags* flags, std::vector<std::string>* data_roots) {
  std::error_code ec;
  flags->spec.model = Absolute(flags->spec.model);
  flags->spec.corpus = Absolute(flags->spec.corpus);
  if (!fs::is_directory(flags->spec.model, ec)) {
    return absl::NotFoundError(
        absl::StrCat("--model ", flags->spec.model, " is not a folder"));
  }
  if (!fs::is_regular_file(flags->spec.corpus, ec)) {
    return absl::NotFoundError(
        absl::StrCat("--corpus ", flags->spec.corpus, " is not a file"));
  }
  auto model_root = DataRootFor(flags->spec.model, "--model");
  if (!model_root.ok()) return model_root.status();
  auto corpus_root = DataRootFor(flags->spec.corpus, "--corpus");
  if (!corpus_root.ok()) return corpus_root.status();
  data_roots->push_back(*model_root);
  if (*corpus_root != *model_root) data_roots->push_back(*corpus_root);
  if (!flags->db.empty()) flags->db = Absolute(flags->db);
  flags->out = Absolute(flags->out);
  fs::create_directories(fs::path(flags->out) / "logs", ec);
  if (ec) {
    return UsageError(absl::StrCat("cannot create --out ", flags->out, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status FindBinaries(RunFlags* flags) {
  auto self = SelfExecutablePath();
  if (!self.ok()) return self.status();
  const fs::path dir = fs::path(*self).parent_path();
  const std::vector<std::string> search = {(dir / ".." / "server").lexically_normal().string(),
                                           (dir / ".." / "worker").lexically_normal().string(),
                                           dir.string()};
  auto coordinator =
      FindExecutable("qcal-coordinator", flags->coordinator_bin, search, "--coordinator-bin");
  if (!coordinator.ok()) return coordinator.status();
  auto worker = FindExecutable("qcal-worker", flags->worker_bin, search, "--worker-bin");
  if (!worker.ok()) return worker.status();
  flags->coordinator_bin = *coordinator;
  flags->worker_bin = *worker;
  return absl::OkStatus();
}

// Best effort, so that a kept --db does not resume an abandoned job.
void CancelQuietly(const Connection& connection, const std::string& job_id) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = connection.UnaryContext(kCancelTimeoutSeconds);
  (void)stub->CancelJob(context.get(), request, &job);
}

absl::Status RunWithCluster(const CommandEnv& env, const RunFlags& flags,
                            LocalCluster& cluster) {
  ConnectionOptions options;
  options.server = cluster.address();
  options.timeout_seconds = env.flags->connection.timeout_seconds;
  auto connection = Connection::Create(options);
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());

  v1::SubmitJobRequest request;
  *request.mutable_spec() = ToJobSpec(flags.spec);
  v1::Job job;
  {
    auto context = (*connection)->UnaryContext();
    if (grpc::Status s = stub->SubmitJob(context.get(), request, &job); !s.ok()) {
      return (*connection)->ToStatus(s);
    }
  }
  if (!env.json()) env.out() << "submitted " << job.id() << "\n" << std::flush;

  JobDisplay display(env.io->out, env.display_mode());
  WatchOptions watch;
  watch.health_check = [&cluster] { return cluster.Health(); };
  auto final_job = WatchUntilFinal(**connection, job.id(), &display, watch);
  display.Finish();
  if (!final_job.ok()) {
    if (IsInterrupted(final_job.status())) CancelQuietly(**connection, job.id());
    return final_job.status();
  }
  if (absl::Status s = JobOutcome(*final_job); !s.ok()) return s;

  auto stats = FetchJobStats(**connection, job.id(), /*allow_partial=*/false);
  if (!stats.ok()) return stats.status();
  if (absl::Status s = stats::WriteCalibrationOutputs(stats->set, flags.out); !s.ok()) {
    return s;
  }
  const fs::path out(flags.out);
  const std::string mllm = (out / stats::kMllmDistributionFile).string();
  const std::string abs = (out / stats::kAbsDistributionFile).string();
  const std::string scales = (out / stats::kActScalesFile).string();
  if (env.json()) {
    nlohmann::ordered_json j;
    j["job_id"] = job.id();
    j["state"] = v1::JobState_Name(final_job->state());
    j["out"] = flags.out;
    j["files"] = {{"mllm", mllm}, {"abs", abs}, {"smoothquant", scales}};
    j["linears"] = stats->set.size();
    j["tokens"] = stats->set.tokens();
    j["logs"] = (out / "logs").string();
    if (!flags.db.empty()) j["db"] = flags.db;
    env.out() << j.dump() << "\n";
  } else {
    env.out() << "results in " << flags.out << ":\n"
              << "  " << mllm << "  (mllm act_scales_distribution)\n"
              << "  " << abs << "  (same on |x|)\n"
              << "  " << scales << "  (SmoothQuant act_scales)\n"
              << "logs in " << (out / "logs").string() << "\n";
  }
  return absl::OkStatus();
}

absl::Status Run(const CommandEnv& env, RunFlags flags) {
  std::vector<std::string> data_roots;
  if (absl::Status s = PrepareInputs(&flags, &data_roots); !s.ok()) return s;
  if (absl::Status s = FindBinaries(&flags); !s.ok()) return s;

  ScopedInterruptHandler interrupts;
  const std::string log_dir = (fs::path(flags.out) / "logs").string();
  LocalClusterOptions options;
  options.coordinator_bin = flags.coordinator_bin;
  options.worker_bin = flags.worker_bin;
  options.db_dir = flags.db;
  options.data_roots = data_roots;
  options.workers = flags.workers;
  options.threads = flags.threads;
  options.log_dir = log_dir;
  auto cluster = LocalCluster::Start(std::move(options));
  if (!cluster.ok()) return cluster.status();
  if (!env.json()) {
    env.out() << "coordinator on " << (*cluster)->address() << ", " << flags.workers
              << " worker" << (flags.workers == 1 ? "" : "s") << " (logs in "
              << log_dir << ")\n"
              << std::flush;
  }
  absl::Status status = RunWithCluster(env, flags, **cluster);
  (*cluster)->Stop();
  return status;
}

}  // namespace

void AddRunCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Calibrate on this machine: start a coordinator and local workers on loopback, "
      "run the job, write the statistics files, stop them");
  AddJobSpecFlags(cmd, &flags->spec);
  cmd->add_option("--workers", flags->workers, "Local workers to start")
      ->check(CLI::Range(1, kMaxWorkers))
      ->capture_default_str();
  cmd->add_option("--db", flags->db,
                  "Coordinator database folder, kept afterwards [a temporary folder, "
                  "removed]");
  cmd->add_option("--out", flags->out,
                  "Folder for act_scales_distribution.json, "
                  "act_scales_distribution_abs.json, act_scales.safetensors and logs/")
      ->capture_default_str();
  cmd->add_option("--coordinator-bin", flags->coordinator_bin,
                  "qcal-coordinator to run [found next to qcal, then in $PATH]");
  cmd->add_option("--worker-bin", flags->worker_bin,
                  "qcal-worker to run [found next to qcal, then in $PATH]");
  cmd->add_option("--threads", flags->threads, "Threads per worker [worker default]")
      ->check(CLI::Range(1, 1024));
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Run(env, *flags); });
}

}  // namespace qcal::client
