// Test-only stand-in for qcal-coordinator, for `qcal run` tests: takes the real
// coordinator's flags, serves the fake CalibrationService on --listen, writes the
// bound address to --port-file, and on SIGTERM shuts down and exits 0.
//
// It leaves a trace in the --db folder: args.txt (its arguments, one a line),
// submit.txt (the SubmitJobRequest, text format), terminated (written on a clean
// SIGTERM shutdown), cancelled.txt (jobs cancelled).
// Behaviour from the environment: FAKE_COORDINATOR_FINAL=failed|running makes the
// submitted job fail or never end (its watch then stays open);
// FAKE_COORDINATOR_EXIT=N exits with N at once, before serving;
// FAKE_COORDINATOR_EVAL=failed makes every evaluation end with an INTERNAL error.
// evaluate.txt holds the last EvaluateRequest (text format), exports.txt every
// ExportRequest (one a line).
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/test_util/fake_calibration_server.h"
#include "common/atomic_file.h"

using qcal::client::testing::FakeCalibrationService;

int main(int argc, char** argv) {
  // Block the stop signals before gRPC starts threads; sigwait below takes them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::string listen, db, port_file, output_root;
  std::vector<std::string> roots;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--listen") listen = args[i + 1];
    else if (args[i] == "--db") db = args[i + 1];
    else if (args[i] == "--data-root") roots.push_back(args[i + 1]);
    else if (args[i] == "--port-file") port_file = args[i + 1];
    else if (args[i] == "--output-root") output_root = args[i + 1];
    else if (args[i] != "--metrics-listen") {
      std::cerr << "fake_coordinator: unknown flag " << args[i] << "\n";
      return 2;
    }
  }
  if (const char* code = std::getenv("FAKE_COORDINATOR_EXIT")) {
    std::cerr << "fake_coordinator: told to exit\n";
    return std::atoi(code);
  }
  if (listen != "127.0.0.1:0" || db.empty() || port_file.empty() || roots.empty()) {
    std::cerr << "fake_coordinator: bad flags: " << absl::StrJoin(args, " ") << "\n";
    return 2;
  }
  std::filesystem::create_directories(db);
  std::ofstream(db + "/args.txt") << absl::StrJoin(args, "\n") << "\n";

  FakeCalibrationService service;
  service.submitted_stats = qcal::client::testing::MakeStatsSet();
  const char* final_state = std::getenv("FAKE_COORDINATOR_FINAL");
  if (final_state != nullptr && std::string(final_state) == "failed") {
    service.submitted_final_state = qcal::v1::JOB_FAILED;
  } else if (final_state != nullptr && std::string(final_state) == "running") {
    service.submitted_final_state = qcal::v1::JOB_RUNNING;
    service.hold_watch_open = true;
  }
  const char* eval = std::getenv("FAKE_COORDINATOR_EVAL");
  if (eval != nullptr && std::string(eval) == "failed") {
    service.evaluate_error = "worker crashed";
  }
  qcal::client::testing::FakeServer server(&service);
  if (!server.ok()) {
    std::cerr << "fake_coordinator: cannot listen\n";
    return 1;
  }
  if (!qcal::WriteFileAtomically(port_file, server.address() + "\n").ok()) {
    std::cerr << "fake_coordinator: cannot write " << port_file << "\n";
    return 1;
  }
  std::cout << "fake_coordinator: serving on " << server.address() << std::endl;

  int signo = 0;
  sigwait(&stop, &signo);
  const qcal::v1::SubmitJobRequest submit = service.last_submit();
  std::ofstream(db + "/submit.txt") << submit.DebugString();
  std::ofstream(db + "/cancelled.txt") << absl::StrJoin(service.cancelled(), "\n");
  std::ofstream(db + "/evaluate.txt") << service.last_evaluate().DebugString();
  {
    std::ofstream exports(db + "/exports.txt");
    for (const auto& e : service.exports()) exports << e.ShortDebugString() << "\n";
  }
  server.Shutdown();
  std::ofstream(db + "/terminated") << signo << "\n";
  std::cout << "fake_coordinator: stopped by signal " << signo << std::endl;
  return 0;
}
