// Internal to client/: how the command files plug into RunCli (cli.cc).
//
// Each Add*Command(s) function declares its subcommands on the app. When CLI11
// parses a subcommand, its callback stores the work to do in the CommandSlot;
// RunCli runs it after parsing and prints its status as the one error line.
#ifndef QCAL_CLIENT_COMMAND_H_
#define QCAL_CLIENT_COMMAND_H_

#include <functional>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli.h"
#include "client/connection.h"
#include "client/json_output.h"
#include "client/progress.h"

namespace qcal::client {

// Flags of the top-level app, shared by every command.
struct GlobalFlags {
  ConnectionOptions connection;
  bool json = false;
};

// What a running command may use.
struct CommandEnv {
  const GlobalFlags* flags;
  const CliIo* io;

  std::ostream& out() const { return *io->out; }
  bool json() const { return flags->json; }
  DisplayMode display_mode() const {
    if (flags->json) return DisplayMode::kJson;
    return io->out_is_tty ? DisplayMode::kTerminal : DisplayMode::kPlain;
  }
  absl::StatusOr<std::unique_ptr<Connection>> Connect() const {
    return Connection::Create(flags->connection);
  }
};

// The endings every command shares: `message` as one JSON line (--json, see
// json_output.h); or that with --json and `text` otherwise.
inline absl::Status PrintJsonLine(const CommandEnv& env, const google::protobuf::Message& message) {
  auto line = MessageToJsonLine(message);
  if (!line.ok()) return line.status();
  env.out() << *line << "\n";
  return absl::OkStatus();
}
inline absl::Status PrintResult(const CommandEnv& env, const google::protobuf::Message& message,
                                const std::string& text) {
  if (env.json()) return PrintJsonLine(env, message);
  env.out() << text;
  return absl::OkStatus();
}

using CommandAction = std::function<absl::Status(const CommandEnv&)>;

struct CommandSlot {
  std::string name;  // for the error line, e.g. "submit"
  CommandAction action;
};

// Makes `cmd`'s callback select `action` (run after parsing) under `name`.
inline void SetAction(CLI::App* cmd, CommandSlot* slot, CommandAction action) {
  std::string name = cmd->get_name();
  cmd->callback([slot, name, action = std::move(action)] {
    slot->name = name;
    slot->action = action;
  });
}

// submit, status, watch, list, cancel (job_commands.cc).
void AddJobCommands(CLI::App& app, CommandSlot* slot);
// evaluate (evaluate_command.cc).
void AddEvaluateCommand(CLI::App& app, CommandSlot* slot);
// export (export_command.cc).
void AddExportCommand(CLI::App& app, CommandSlot* slot);
// shadow-layers (shadow_layers_command.cc).
void AddShadowLayersCommand(CLI::App& app, CommandSlot* slot);
// stats (stats_command.cc).
void AddStatsCommand(CLI::App& app, CommandSlot* slot);
// operation (operation_command.cc).
void AddOperationCommand(CLI::App& app, CommandSlot* slot);
// report (report_command.cc).
void AddReportCommand(CLI::App& app, CommandSlot* slot);
// run (run_command.cc).
void AddRunCommand(CLI::App& app, CommandSlot* slot);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_COMMAND_H_
