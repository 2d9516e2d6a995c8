// `qcal-worker calibrate`: the calibration engine in one process, from token files
// or a text corpus to mllm's and SmoothQuant's statistics files.
#ifndef QCAL_WORKER_CALIBRATE_COMMAND_H_
#define QCAL_WORKER_CALIBRATE_COMMAND_H_

#include "CLI/App.hpp"

namespace qcal {

// Registers the `calibrate` subcommand on `app`.
void AddCalibrateCommand(CLI::App& app);

}  // namespace qcal

#endif  // QCAL_WORKER_CALIBRATE_COMMAND_H_
