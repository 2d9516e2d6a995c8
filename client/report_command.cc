// report JOB [--out report.html] [--json]: the job's calibration report (report.h).
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/job_stats.h"
#include "client/report.h"

namespace qcal::client {
namespace {

struct ReportFlags {
  std::string job_id;
  std::string out;
};

absl::Status Report(const CommandEnv& env, const ReportFlags& flags) {
  if (flags.out.empty() && !env.json()) {
    return UsageError("give --out FILE (the HTML page) or --json (its data on stdout)");
  }
  if (!flags.out.empty()) {
    if (absl::Status s = CheckOutputPath(flags.out); !s.ok()) return s;
  }
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto inputs = GatherReport(**connection, flags.job_id);
  if (!inputs.ok()) return inputs.status();
  const nlohmann::ordered_json report = ReportJson(*inputs);
  if (!flags.out.empty()) {
    if (absl::Status s = WriteFileAtomically(flags.out, ReportHtml(report)); !s.ok()) return s;
  }
  if (env.json()) {
    env.out() << report.dump() << "\n";
  } else {
    env.out() << "wrote " << flags.out << " (job " << flags.job_id << ", "
              << report["linears"].size() << " linears"
              << (report["evaluation"].is_null() ? ", no evaluation" : ", with its evaluation")
              << ", " << report["exports"].size() << " exports)\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddReportCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<ReportFlags>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "The job's calibration report: one self-contained HTML page (outlier heat map, "
      "accuracy and perplexity against the threshold, shadow layers, per-tensor SQNR and "
      "channel profiles, exports), or its data as JSON with --json");
  cmd->add_option("JOB", flags->job_id, "Job id (CALIBRATED)")->required();
  cmd->add_option("--out", flags->out, "HTML file to write");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Report(env, *flags); });
}

}  // namespace qcal::client
