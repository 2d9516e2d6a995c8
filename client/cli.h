// The `qcal` command line: RunCli parses the arguments, runs one command and returns
// the process exit code (exit_codes.h). main() is one call to it; tests call it with
// their own streams against an in-process server.
//
//   qcal [--server ADDR] [--token-file FILE] [--tls-ca FILE] [--timeout S] [--json]
//        submit|status|watch|list|cancel|evaluate|export|shadow-layers|stats|operation|run ...
//
// See docs/cli.md for every command. Nothing here throws: CLI11's exceptions are
// turned into usage errors (exit 2) or help output (exit 0).
#ifndef QCAL_CLIENT_CLI_H_
#define QCAL_CLIENT_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace qcal::client {

struct CliIo {
  std::ostream* out;  // results, progress
  std::ostream* err;  // the one error line
  // Whether `out` is a terminal: selects the redrawn progress bar.
  bool out_is_tty = false;
};

int RunCli(int argc, const char* const argv[], const CliIo& io);
// args[0] is the program name.
int RunCli(const std::vector<std::string>& args, const CliIo& io);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_CLI_H_
