// How work spreads over workers: the same calibration job (default 1,024 llama-small
// samples of 256 tokens) on a local coordinator with 1 worker and with 2 (one
// compute thread each), side by side. Prints each run's job time, the speed-up of
// 2 workers over 1, and how far apart the workers finished (their last merged
// reports, from Job.progress.workers), against the goals of task sizing: >= 1.8x
// and within 10 % of the job's time on a 2-core machine.
//
//   build/bench/worker_scaling_bench [--samples N] [--seq-len L] [--workers-max W]
//                                    [--coordinator-bin B] [--worker-bin B]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/local_cluster.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"

namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

struct Flags {
  std::string data = QCAL_TEST_DATA_DIR;
  std::string model = "models/llama-small";
  std::string corpus = "corpus/calib.jsonl.zst";
  int64_t samples = 1024;
  int64_t seq_len = 256;
  int workers_max = 2;
  int threads = 1;
  std::string coordinator_bin = QCAL_COORDINATOR_BIN;
  std::string worker_bin = QCAL_WORKER_BIN;
};

struct Run {
  int workers = 0;
  double seconds = 0;        // submit to final
  double finish_spread = 0;  // first to last worker's last merged report
  std::vector<std::pair<std::string, int64_t>> samples;  // per worker
  int64_t backups = 0;
  bool ok = false;
};

Run RunJob(const Flags& f, int workers, const std::string& scratch) {
  Run run;
  run.workers = workers;
  const std::string logs = scratch + "/logs-" + std::to_string(workers);
  fs::create_directories(logs);
  qcal::client::LocalClusterOptions o;
  o.coordinator_bin = f.coordinator_bin;
  o.worker_bin = f.worker_bin;
  o.data_roots = {fs::absolute(f.data).lexically_normal().string()};
  o.workers = workers;
  o.threads = f.threads;
  o.log_dir = logs;
  auto cluster = qcal::client::LocalCluster::Start(o);
  if (!cluster.ok()) {
    std::fprintf(stderr, "cannot start the cluster: %s\n", cluster.status().ToString().c_str());
    return run;
  }
  auto stub = qcal::v1::CalibrationService::NewStub(
      grpc::CreateChannel((*cluster)->address(), grpc::InsecureChannelCredentials()));
  qcal::v1::SubmitJobRequest req;
  req.mutable_spec()->set_model(f.model);
  req.mutable_spec()->set_corpus(f.corpus);
  req.mutable_spec()->mutable_sampling()->set_num_samples(f.samples);
  req.mutable_spec()->mutable_sampling()->set_seq_len(f.seq_len);
  qcal::v1::Job job;
  const auto start = std::chrono::steady_clock::now();
  {
    grpc::ClientContext ctx;
    grpc::Status s = stub->SubmitJob(&ctx, req, &job);
    if (!s.ok()) {
      std::fprintf(stderr, "SubmitJob: %s\n", s.error_message().c_str());
      return run;
    }
  }
  while (!qcal::v1::IsFinalJobState(job.state())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    qcal::v1::GetJobRequest g;
    g.set_job_id(job.id());
    if (!stub->GetJob(&ctx, g, &job).ok() || !(*cluster)->Health().ok()) {
      std::fprintf(stderr, "the cluster stopped (logs in %s)\n", logs.c_str());
      return run;
    }
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.ok = job.state() == qcal::v1::JOB_CALIBRATED;
  int64_t first = INT64_MAX, last = INT64_MIN;
  for (const auto& w : job.progress().workers()) {
    run.samples.emplace_back(w.name(), w.samples_done());
    if (!w.has_last_report_time()) continue;
    const int64_t ms = TimeUtil::TimestampToMilliseconds(w.last_report_time());
    first = std::min(first, ms);
    last = std::max(last, ms);
  }
  run.finish_spread = first <= last ? (last - first) / 1e3 : 0;
  run.backups = job.progress().backup_tasks();
  (*cluster)->Stop();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app("Speed-up of N workers over 1 on one calibration job, and how far apart they finish");
  app.add_option("--data", f.data, "Data root holding the model and corpus")->capture_default_str();
  app.add_option("--model", f.model, "Model folder under the data root")->capture_default_str();
  app.add_option("--corpus", f.corpus, "Corpus under the data root")->capture_default_str();
  app.add_option("--samples", f.samples, "Samples of the job")->capture_default_str();
  app.add_option("--seq-len", f.seq_len, "Tokens per sample")->capture_default_str();
  app.add_option("--workers-max", f.workers_max, "Largest number of workers")->capture_default_str();
  app.add_option("--threads", f.threads, "Compute threads per worker")->capture_default_str();
  app.add_option("--coordinator-bin", f.coordinator_bin)->capture_default_str();
  app.add_option("--worker-bin", f.worker_bin)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string scratch = fs::temp_directory_path() / ("qcal-scaling-" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  std::printf("%s, %lld samples x %lld tokens, %d thread(s) per worker\n", f.model.c_str(),
              static_cast<long long>(f.samples), static_cast<long long>(f.seq_len), f.threads);
  std::printf("%-8s %9s %10s %8s %15s %8s  %s\n", "workers", "job s", "tokens/s", "speed-up",
              "finish spread", "backups", "samples per worker");
  double base = 0;
  bool ok = true;
  for (int n = 1; n <= f.workers_max; ++n) {
    const Run r = RunJob(f, n, scratch);
    if (!r.ok) {
      ok = false;
      break;
    }
    if (n == 1) base = r.seconds;
    std::string shares;
    for (const auto& [name, s] : r.samples) shares += name + "=" + std::to_string(s) + " ";
    std::printf("%-8d %9.2f %10.0f %7.2fx %7.2f s %4.1f%% %8lld  %s\n", n, r.seconds,
                f.samples * f.seq_len / r.seconds, base / r.seconds, r.finish_spread,
                100 * r.finish_spread / r.seconds, static_cast<long long>(r.backups),
                shares.c_str());
    if (n == 2) {
      std::printf("goal on 2 cores: >= 1.80x and finish spread <= 10%%: %s\n",
                  base / r.seconds >= 1.8 && r.finish_spread <= 0.1 * r.seconds ? "met" : "NOT met");
    }
  }
  fs::remove_all(scratch);
  return ok ? 0 : 1;
}
