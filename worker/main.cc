// qcal-worker: the model runtime.
//   qcal-worker --coordinator ADDR [...]     the service worker loop
//   qcal-worker calibrate ...                 the engine in one process
//   qcal-worker tokenize ...                  text to token ids
#include <csignal>
#include <iostream>

#include "CLI/CLI.hpp"
#include "worker/calibrate_command.h"
#include "worker/service/worker_loop.h"
#include "worker/text/tokenize_command.h"

namespace {

std::atomic<int> g_stop_requests{0};

void OnStopSignal(int) { g_stop_requests.fetch_add(1); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "qcal-worker: calibration worker (libtorch model runtime).\n"
      "With --coordinator it serves a coordinator; the subcommands run locally."};
  qcal::WorkerLoopOptions loop;
  app.add_option("--coordinator", loop.coordinator, "Coordinator address host:port (service mode)");
  app.add_option("--token-file", loop.token_file, "File holding the worker bearer token");
  app.add_option("--tls-ca", loop.tls_ca, "PEM root certificate: use TLS to the coordinator");
  app.add_option("--name", loop.name, "Worker name shown by the coordinator (default host-pid)");
  app.add_option("--device", loop.engine.device, "cpu or cuda:N")->capture_default_str();
  app.add_option("--threads", loop.engine.threads, "Compute threads (0 = one per core)")
      ->capture_default_str();
  app.add_flag("--bf16", loop.engine.bf16, "Run linear layers in bfloat16");
  app.add_option("--max-tasks", loop.max_tasks, "Exit after this many tasks (0 = never)");
  app.add_option("--debug-export-pause-ms", loop.export_pause_ms,
                 "Tests only: pause between an export's files and its final rename")
      ->group("");
  app.add_option("--debug-report-delay-ms", loop.report_delay_ms,
                 "Tests only: wait this long, without heartbeats, between finishing a task "
                 "and reporting it (a straggler)")
      ->group("");
  qcal::AddCalibrateCommand(app);
  qcal::text::AddTokenizeCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return qcal::text::CliExitCode(app, e);
  }
  if (app.get_subcommands().empty()) {
    if (loop.coordinator.empty()) {
      std::cerr << "qcal-worker: give --coordinator ADDR or a subcommand (see --help)\n";
      return 2;
    }
    std::signal(SIGTERM, OnStopSignal);
    std::signal(SIGINT, OnStopSignal);
    return qcal::RunWorkerLoop(loop, &g_stop_requests);
  }
  return 0;
}
