// stats JOB --format mllm|abs|smoothquant --out FILE [--partial]
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/job_stats.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

struct StatsFlags {
  std::string job_id;
  std::string format;
  std::string out;
  bool partial = false;
};

// A usage error unless `path`'s folder exists (checked before a long download).
absl::Status CheckOutputPath(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) {
    return UsageError(absl::StrCat("--out ", path, " is a directory; give a file name"));
  }
  const std::filesystem::path parent = p.has_parent_path() ? p.parent_path() : ".";
  if (!std::filesystem::is_directory(parent, ec)) {
    return UsageError(absl::StrCat("--out ", path, ": folder ", parent.string(),
                                   " does not exist"));
  }
  return absl::OkStatus();
}

absl::Status Stats(const CommandEnv& env, const StatsFlags& flags) {
  auto format = ParseStatsFormat(flags.format);
  if (!format.ok()) return format.status();
  if (absl::Status s = CheckOutputPath(flags.out); !s.ok()) return s;
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stats = FetchJobStats(**connection, flags.job_id, flags.partial);
  if (!stats.ok()) return stats.status();
  if (absl::Status s = WriteStatsFile(stats->set, *format, flags.out); !s.ok()) return s;
  if (env.json()) {
    nlohmann::ordered_json j;
    j["job_id"] = flags.job_id;
    j["format"] = flags.format;
    j["out"] = flags.out;
    j["state"] = v1::JobState_Name(stats->state);
    j["linears"] = stats->set.size();
    j["tokens"] = stats->set.tokens();
    j["samples"] = stats->samples;
    env.out() << j.dump() << "\n";
  } else {
    env.out() << "wrote " << flags.out << " (" << flags.format << ", "
              << stats->set.size() << " linears, " << stats->set.tokens()
              << " tokens, job " << v1::JobState_Name(stats->state) << ")\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddStatsCommand(CLI::App& app, CommandSlot* slot) {
  auto flags = std::make_shared<StatsFlags>();
  CLI::App* cmd = app.add_subcommand(
      "stats", "Download a job's activation statistics into one file");
  cmd->add_option("JOB", flags->job_id, "Job id")->required();
  cmd->add_option("--format", flags->format,
                  "mllm: act_scales_distribution.json as mllm computes it; abs: the "
                  "same on |x|; smoothquant: act_scales safetensors")
      ->required()
      ->check(CLI::IsMember({"mllm", "abs", "smoothquant"}));
  cmd->add_option("--out", flags->out, "Output file")->required();
  cmd->add_flag("--partial", flags->partial,
                "Allow the statistics of a job that is not CALIBRATED yet");
  SetAction(cmd, slot, [flags](const CommandEnv& env) { return Stats(env, *flags); });
}

}  // namespace qcal::client
