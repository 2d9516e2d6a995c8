#include "client/cli.h"

#include <exception>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "common/version.h"

namespace qcal::client {
namespace {

constexpr char kFooter[] = R"(Exit codes:
  0  success
  1  internal or unknown error
  2  usage error (bad flag or value, unreadable --token-file / --tls-ca)
  3  the job ended FAILED or CANCELLED (submit --wait, watch, run), or the
     operation ended with an error (evaluate --wait, operation --wait, run)
  4  NOT_FOUND (unknown job or operation, missing model or corpus)
  5  request refused: INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED,
     UNIMPLEMENTED, ALREADY_EXISTS, OUT_OF_RANGE
  6  server unreachable or busy: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
  7  UNAUTHENTICATED (missing or wrong bearer token)
  130 interrupted (Ctrl-C while waiting)
Errors are one line on stderr: qcal: <command>: <STATUS_CODE>: <message>
Documentation: docs/cli.md)";

// The subcommand named on the command line, for error lines of failed parses.
std::string CommandName(const CLI::App& app, int argc, const char* const argv[]) {
  for (const CLI::App* sub : app.get_subcommands()) return sub->get_name();
  for (int i = 1; i < argc; ++i) {
    for (const CLI::App* sub :
         app.get_subcommands([](const CLI::App*) { return true; })) {
      if (sub->get_name() == argv[i]) return sub->get_name();
    }
  }
  return "";
}

void AddGlobalFlags(CLI::App& app, GlobalFlags* flags) {
  app.add_option("--server", flags->connection.server,
                 "Coordinator address host:port")
      ->envname("QCAL_SERVER")
      ->capture_default_str();
  app.add_option("--token-file", flags->connection.token_file,
                 "File holding the bearer token sent with every call")
      ->envname("QCAL_TOKEN_FILE");
  app.add_option("--tls-ca", flags->connection.tls_ca_file,
                 "Use TLS, verifying the server with this root CA (PEM); "
                 "default: insecure");
  app.add_option("--timeout", flags->connection.timeout_seconds,
                 "Deadline of each unary call, seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--json", flags->json,
               "Print results as JSON, one object per line (see docs/cli.md)");
}

}  // namespace

int RunCli(int argc, const char* const argv[], const CliIo& io) {
  CLI::App app{"qcal: calibrate LLMs for W8A8 quantization (client of qcal-coordinator)",
               "qcal"};
  app.footer(kFooter);
  app.set_version_flag("--version", absl::StrCat("qcal ", kQcalVersion));
  app.require_subcommand(1);
  app.fallthrough();  // global flags after the command name too
  // A repeated flag takes its last value (e.g. overriding a wrapper script's).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  GlobalFlags flags;
  CommandSlot slot;
  AddGlobalFlags(app, &flags);
  AddJobCommands(app, &slot);
  AddEvaluateCommand(app, &slot);
  AddExportCommand(app, &slot);
  AddShadowLayersCommand(app, &slot);
  AddStatsCommand(app, &slot);
  AddReportCommand(app, &slot);
  AddOperationCommand(app, &slot);
  AddRunCommand(app, &slot);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e, *io.out, *io.err);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e, *io.out, *io.err);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e, *io.out, *io.err);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    const std::vector<std::string> extra = app.remaining();
    if (app.get_subcommands().empty() && !extra.empty() && extra[0][0] != '-') {
      message = absl::StrCat("unknown command '", extra[0], "'; see qcal --help");
    }
    *io.err << ErrorLine(CommandName(app, argc, argv), UsageError(message)) << "\n";
    return kExitUsage;
  }
  if (!slot.action) {
    *io.err << ErrorLine("", UsageError("no command given; see qcal --help")) << "\n";
    return kExitUsage;
  }

  CommandEnv env{&flags, &io};
  absl::Status status;
  try {
    status = slot.action(env);
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
  io.out->flush();
  if (status.ok()) return kExitOk;
  *io.err << ErrorLine(slot.name, status) << "\n";
  io.err->flush();
  return ExitCodeFor(status);
}

int RunCli(const std::vector<std::string>& args, const CliIo& io) {
  std::vector<const char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  return RunCli(static_cast<int>(args.size()), argv.data(), io);
}

}  // namespace qcal::client
