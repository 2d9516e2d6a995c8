// qcal: the command-line client of qcal-coordinator (see client/cli.h, docs/cli.md).
#include <unistd.h>

#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) {
  qcal::client::CliIo io{&std::cout, &std::cerr, ::isatty(STDOUT_FILENO) == 1};
  return qcal::client::RunCli(argc, argv, io);
}
