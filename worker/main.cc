// qcal-worker: the model runtime. Subcommands run the engine locally (calibrate,
// tokenize); the coordinator-driven worker loop joins them with the service.
#include <iostream>

#include "CLI/CLI.hpp"
#include "worker/calibrate_command.h"

int main(int argc, char** argv) {
  CLI::App app{"qcal-worker: calibration worker (libtorch model runtime)"};
  app.require_subcommand(1);
  qcal::AddCalibrateCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return 0;
}
