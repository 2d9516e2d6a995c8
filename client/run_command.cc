// run: calibrate on this machine with a private coordinator and workers, and with
// --eval-corpus go on to a threshold evaluation.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/evaluation.h"
#include "client/exit_codes.h"
#include "client/export_request.h"
#include "client/interrupt.h"
#include "client/job_spec_flags.h"
#include "client/job_stats.h"
#include "client/job_watch.h"
#include "client/json_output.h"
#include "client/local_cluster.h"
#include "client/operation_wait.h"
#include "client/process.h"
#include "client/report.h"
#include "common/quant/shadow.h"
#include "common/stats/outputs.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxWorkers = 256;
constexpr double kCancelTimeoutSeconds = 2;
constexpr int64_t kDefaultEvalNumSamples = 128;
constexpr char kModelResAccFile[] = "model_res_acc.json";
constexpr char kEvaluationFile[] = "evaluation.json";
constexpr char kReportFile[] = "report.html";
// The exports `run` ends with (folders in --out, replaced on every run).
constexpr std::pair<const char*, const char*> kRunExports[] = {
    {"mllm", "export-mllm"}, {"compressed-tensors", "export-compressed-tensors"}};

struct RunFlags {
  JobSpecFlags spec;
  // Empty: no evaluation.
  std::string eval_corpus;
  int64_t eval_num_samples = kDefaultEvalNumSamples;
  BudgetFlags budget;
  std::optional<int64_t> eval_seq_len;  // unset: the calibration's
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
  if (!flags->eval_corpus.empty()) {
    flags->eval_corpus = Absolute(flags->eval_corpus);
    if (!fs::is_regular_file(flags->eval_corpus, ec)) {
      return absl::NotFoundError(
          absl::StrCat("--eval-corpus ", flags->eval_corpus, " is not a file"));
    }
    auto eval_root = DataRootFor(flags->eval_corpus, "--eval-corpus");
    if (!eval_root.ok()) return eval_root.status();
    if (std::find(data_roots->begin(), data_roots->end(), *eval_root) ==
        data_roots->end()) {
      data_roots->push_back(*eval_root);
    }
  }
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

// What the evaluation after the calibration produced.
struct EvaluationOutcome {
  std::string operation;
  v1::EvaluateResponse response;
  std::string model_res_acc;  // paths of the files written
  std::string evaluation;
};

// Evaluates the calibrated job with the default thresholds on --eval-corpus, shows
// its progress, and writes model_res_acc.json and evaluation.json into --out.
absl::StatusOr<EvaluationOutcome> EvaluateJob(const CommandEnv& env, const RunFlags& flags,
                                              const Connection& connection,
                                              LocalCluster& cluster,
                                              const std::string& job_id) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  v1::EvaluateRequest request;
  request.set_job_id(job_id);
  request.set_eval_corpus(flags.eval_corpus);
  request.mutable_eval_sampling()->set_num_samples(flags.eval_num_samples);
  if (flags.eval_seq_len) request.mutable_eval_sampling()->set_seq_len(*flags.eval_seq_len);
  ApplyBudgetFlags(flags.budget, &request);
  v1::Operation op;
  {
    auto context = connection.UnaryContext();
    if (grpc::Status s = stub->Evaluate(context.get(), request, &op); !s.ok()) {
      return connection.ToStatus(s);
    }
  }
  if (!env.json()) {
    env.out() << "evaluating " << job_id << " on " << flags.eval_corpus << ": "
              << op.name() << "\n"
              << std::flush;
  }
  OperationDisplay display(env.io->out, env.display_mode());
  OperationWaitOptions wait;
  wait.health_check = [&cluster] { return cluster.Health(); };
  wait.call_timeout_seconds = env.flags->connection.timeout_seconds;
  auto done = WaitUntilDone(connection, op, &display, wait);
  display.Finish();
  if (!done.ok()) {
    if (IsInterrupted(done.status())) CancelOperationQuietly(connection, op.name());
    return done.status();
  }
  if (absl::Status s = OperationOutcome(*done); !s.ok()) return s;
  EvaluationOutcome outcome;
  outcome.operation = op.name();
  auto response = EvaluateResponseOf(*done);
  if (!response.ok()) return response.status();
  outcome.response = *std::move(response);
  // mllm keys model_res_acc.json by the model name it loaded: here the model path.
  auto res_acc = ModelResAccJsonOf(outcome.response, flags.spec.model);
  if (!res_acc.ok()) return res_acc.status();
  auto evaluation = EvaluateResponseJson(outcome.response);
  if (!evaluation.ok()) return evaluation.status();
  const fs::path out(flags.out);
  outcome.model_res_acc = (out / kModelResAccFile).string();
  outcome.evaluation = (out / kEvaluationFile).string();
  if (absl::Status s = WriteFileAtomically(outcome.model_res_acc, *res_acc); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomically(outcome.evaluation, *evaluation + "\n");
      !s.ok()) {
    return s;
  }
  return outcome;
}

// The mllm and compressed-tensors exports of the evaluation's recommended threshold,
// into --out (an earlier run's export folders are replaced).
absl::StatusOr<std::vector<v1::ExportResponse>> ExportRecommended(const CommandEnv& env,
                                                                  const RunFlags& flags,
                                                                  Connection& connection,
                                                                  const std::string& job_id) {
  std::vector<v1::ExportResponse> out;
  for (const auto& [format, folder] : kRunExports) {
    const fs::path dir = fs::path(flags.out) / folder;
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot replace ", dir.string(), ": ", ec.message()));
    ExportFlags f;
    f.job_id = job_id;
    f.threshold = "recommended";
    f.format = format;
    f.out = folder;
    auto request = ToExportRequest(f);
    if (!request.ok()) return request.status();
    OperationDisplay display(env.io->out, env.display_mode());
    auto r = RunExport(connection, *request, &display, env.flags->connection.timeout_seconds);
    display.Finish();
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

// An integral threshold as a JSON int (8, not 8.0), as mllm's files write it.
nlohmann::ordered_json ThresholdJson(double t) {
  if (std::trunc(t) == t && std::fabs(t) < 9.2e18) {
    return nlohmann::ordered_json(static_cast<int64_t>(t));
  }
  return nlohmann::ordered_json(t);
}

std::vector<int64_t> LayersOf(const v1::ThresholdResult& r) {
  return std::vector<int64_t>(r.shadow_layers().begin(), r.shadow_layers().end());
}

// What `run` prints at the end: the evaluation's table, the files, and the
// recommended threshold's shadow layers last; with --json one summary object.
void PrintSummary(const CommandEnv& env, const RunFlags& flags, const v1::Job& final_job,
                  const JobStats& job_stats,
                  const std::optional<EvaluationOutcome>& evaluation,
                  const std::vector<v1::ExportResponse>& exports) {
  const v1::ThresholdResult* recommended =
      evaluation ? RecommendedResult(evaluation->response) : nullptr;
  const fs::path out(flags.out);
  const std::string mllm = (out / stats::kMllmDistributionFile).string();
  const std::string abs = (out / stats::kAbsDistributionFile).string();
  const std::string scales = (out / stats::kActScalesFile).string();
  if (env.json()) {
    nlohmann::ordered_json j;
    j["job_id"] = final_job.id();
    j["state"] = v1::JobState_Name(final_job.state());
    j["out"] = flags.out;
    j["files"] = {{"mllm", mllm}, {"abs", abs}, {"smoothquant", scales}};
    if (evaluation) {
      j["files"]["model_res_acc"] = evaluation->model_res_acc;
      j["files"]["evaluation"] = evaluation->evaluation;
    }
    j["linears"] = job_stats.set.size();
    j["tokens"] = job_stats.set.tokens();
    if (evaluation) {
      nlohmann::ordered_json e;
      e["operation"] = evaluation->operation;
      e["recommended_threshold"] = nullptr;
      e["shadow_layers"] = nullptr;
      e["shadow_layers_set"] = nullptr;
      if (recommended != nullptr) {
        const std::vector<int64_t> layers = LayersOf(*recommended);
        e["recommended_threshold"] = ThresholdJson(recommended->threshold());
        e["shadow_layers"] = layers;
        e["shadow_layers_set"] = quant::FormatLayerSet(layers);
      }
      e["recommendation_note"] = evaluation->response.recommendation_note();
      j["evaluation"] = e;
    }
    j["exports"] = nlohmann::ordered_json::object();
    for (const auto& e : exports) j["exports"][e.format()] = e.output_dir();
    j["report"] = (out / kReportFile).string();
    j["logs"] = (out / "logs").string();
    if (!flags.db.empty()) j["db"] = flags.db;
    env.out() << j.dump() << "\n";
    return;
  }
  if (evaluation) env.out() << FormatEvaluationTable(evaluation->response);
  env.out() << "results in " << flags.out << ":\n"
            << "  " << mllm << "  (mllm act_scales_distribution)\n"
            << "  " << abs << "  (same on |x|)\n"
            << "  " << scales << "  (SmoothQuant act_scales)\n";
  if (evaluation) {
    env.out() << "  " << evaluation->model_res_acc << "  (mllm model_res_acc)\n"
              << "  " << evaluation->evaluation << "  (the evaluation, "
              << evaluation->operation << ")\n";
  }
  for (const auto& e : exports) {
    env.out() << "  " << e.output_dir() << "/  (" << e.format() << " export, "
              << e.files_size() << " files)\n";
  }
  env.out() << "logs in " << (out / "logs").string() << "\n";
  if (recommended != nullptr) {
    env.out() << "recommended threshold " << FormatThreshold(recommended->threshold())
              << ", shadow layers " << quant::FormatLayerSet(LayersOf(*recommended))
              << "\n";
  } else if (evaluation) {
    env.out() << "no recommended threshold (so no exports): "
              << evaluation->response.recommendation_note() << "\n";
  }
  env.out() << "report: " << (out / kReportFile).string() << "  (open it in a browser)\n";
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
  std::optional<EvaluationOutcome> evaluation;
  if (!flags.eval_corpus.empty()) {
    auto outcome = EvaluateJob(env, flags, **connection, cluster, job.id());
    if (!outcome.ok()) return outcome.status();
    evaluation = *std::move(outcome);
  }
  std::vector<v1::ExportResponse> exports;
  if (evaluation && RecommendedResult(evaluation->response) != nullptr) {
    auto written = ExportRecommended(env, flags, **connection, job.id());
    if (!written.ok()) return written.status();
    exports = *std::move(written);
  }
  // The report of everything above, from what this run already holds (`qcal report`
  // reads the same from the coordinator).
  std::optional<FoundEvaluation> found;
  if (evaluation) found = FoundEvaluation{evaluation->operation, evaluation->response};
  const std::string html = ReportHtml(
      ReportJson(*final_job, stats->set, found ? &*found : nullptr, exports));
  if (absl::Status s = WriteFileAtomically((fs::path(flags.out) / kReportFile).string(), html);
      !s.ok()) {
    return s;
  }
  PrintSummary(env, flags, *final_job, *stats, evaluation, exports);
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
  options.output_root = flags.out;
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
      "run the job, write the statistics files (with --eval-corpus evaluate the "
      "thresholds and print the recommended one and its shadow layers), stop them");
  AddJobSpecFlags(cmd, &flags->spec);
  cmd->add_option("--eval-corpus", flags->eval_corpus,
                  "After calibrating, evaluate the default thresholds on this corpus and "
                  "write model_res_acc.json and evaluation.json [no evaluation]");
  cmd->add_option("--eval-num-samples", flags->eval_num_samples,
                  "Evaluation samples (with --eval-corpus)")
      ->check(CLI::Range(int64_t{1}, kMaxNumSamples))
      ->capture_default_str();
  AddBudgetFlags(cmd, &flags->budget);
  cmd->add_option_function<int64_t>(
         "--eval-seq-len", [f = flags.get()](const int64_t& v) { f->eval_seq_len = v; },
         "Tokens per evaluation sample (with --eval-corpus) [the calibration's]")
      ->check(CLI::Range(int64_t{2}, kMaxSeqLen));
  cmd->add_option("--workers", flags->workers, "Local workers to start")
      ->check(CLI::Range(1, kMaxWorkers))
      ->capture_default_str();
  cmd->add_option("--db", flags->db,
                  "Coordinator database folder, kept afterwards [a temporary folder, "
                  "removed]");
  cmd->add_option("--out", flags->out,
                  "Folder for act_scales_distribution.json, "
                  "act_scales_distribution_abs.json, act_scales.safetensors, with "
                  "--eval-corpus model_res_acc.json and evaluation.json, and logs/")
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
