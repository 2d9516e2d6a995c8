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
//
// This file holds the flags, the order of the phases and the final table; the phases
// themselves are in bench/load/ (control_plane, data_plane, with fake_worker,
// coordinator_process and common beneath them).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/load/common.h"
#include "bench/load/control_plane.h"
#include "bench/load/coordinator_process.h"
#include "bench/load/data_plane.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;

// The 7B goal of the issue: workers one coordinator must absorb.
constexpr double kGoalWorkers = 64;

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

// Parses and checks the command line into *f; returns the exit status when the
// program should stop here (--help, bad flags).
std::optional<int> ParseFlags(int argc, char** argv, Flags* out) {
  CLI::App app{"load_test: one qcal-coordinator under control- and data-plane load (loopback)"};
  Flags& f = *out;
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
  return std::nullopt;
}

// The 7B data phase: writes the sparse model folder, then loads the coordinator with
// reports of its shape. Returns the errors it counted.
int64_t Run7bPhase(const Flags& f, std::vector<DataResult>* data) {
  const std::string root = f.work_dir + "/root7b";
  const std::string model = root + "/models/llama-7b-shape";
  int64_t apparent = 0;
  const absl::Status st = WriteSparse7bModel(model, &apparent);
  if (!st.ok()) {
    std::printf("\nFAILED: cannot write the 7B-shaped model: %s\n",
                std::string(st.message()).c_str());
    return 1;
  }
  std::printf("\n7B-shaped model folder %s: model.safetensors %.1f GB apparent, %.0f KB on disk\n",
              model.c_str(), static_cast<double>(apparent) / 1e9,
              static_cast<double>(DiskBytes(model + "/model.safetensors")) / 1e3);
  // The corpus resolves against the first root; the model is absolute in the second.
  data->push_back(RunDataPlane(f, f.work_dir, "7b", fs::canonical(model).string(),
                               {f.data_dir, root}, f.big_workers, f.big_reports, 3));
  return data->back().errors;
}

int Main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows when piped to a file
  Flags f;
  if (const std::optional<int> status = ParseFlags(argc, argv, &f)) return *status;
  const bool made_work = f.work_dir.empty();
  if (made_work) {
    f.work_dir = (fs::temp_directory_path() / absl::StrCat("qcal-load-", ::getpid())).string();
  }
  SetInterruptNote(
      absl::StrCat("\nload_test: interrupted; the coordinator was killed; the scratch folder ",
                   f.work_dir, " is left behind (it may hold gigabytes)\n"));
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
  if (f.phase == "all" || f.phase == "data" || f.phase == "7b") errors += Run7bPhase(f, &data);
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
