#include "client/job_stats.h"

#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/exit_codes.h"
#include "common/atomic_file.h"
#include "common/stats/outputs.h"
#include "common/stats/stats_proto.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

absl::Status AddLinear(const v1::LinearStatsProto& proto, stats::StatsSet* set) {
  const std::string context = absl::StrCat("linear '", proto.name(), "'");
  auto input = stats::TensorStatsFromProto(proto.input(), context + " input");
  if (!input.ok()) return input.status();
  auto output = stats::TensorStatsFromProto(proto.output(), context + " output");
  if (!output.ok()) return output.status();
  return set->Add(stats::LinearStats(proto.name(), *std::move(input), *std::move(output)));
}

}  // namespace

absl::StatusOr<JobStats> FetchJobStats(const Connection& connection,
                                       const std::string& job_id, bool allow_partial) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  v1::GetJobStatsRequest request;
  request.set_job_id(job_id);
  request.set_allow_partial(allow_partial);
  auto context = connection.StreamContext();
  auto reader = stub->GetJobStats(context.get(), request);
  JobStats result;
  v1::JobStatsChunk chunk;
  bool first = true;
  absl::Status bad;
  while (reader->Read(&chunk)) {
    if (first) {
      result.state = chunk.state();
      result.samples = chunk.samples();
      bad = result.set.AddTokens(chunk.tokens());
      first = false;
    }
    for (const v1::LinearStatsProto& linear : chunk.linears()) {
      if (!bad.ok()) break;
      bad = AddLinear(linear, &result.set);
    }
    if (!bad.ok()) {
      context->TryCancel();
      break;
    }
  }
  const grpc::Status finish = reader->Finish();
  if (!bad.ok()) {
    return absl::DataLossError(absl::StrCat("statistics of ", job_id,
                                            " are corrupt: ", bad.message()));
  }
  if (!finish.ok()) return connection.ToStatus(finish);
  if (first) {
    return absl::DataLossError(
        absl::StrCat("the server sent no statistics for ", job_id));
  }
  return result;
}

absl::StatusOr<StatsFormat> ParseStatsFormat(absl::string_view name) {
  if (name == "mllm") return StatsFormat::kMllm;
  if (name == "abs") return StatsFormat::kAbs;
  if (name == "smoothquant") return StatsFormat::kSmoothQuant;
  return UsageError(
      absl::StrCat("--format must be mllm, abs or smoothquant (got \"", name, "\")"));
}

absl::Status WriteStatsFile(const stats::StatsSet& set, StatsFormat format,
                            const std::string& path) {
  if (format == StatsFormat::kSmoothQuant) {
    const std::string temp = TemporaryPathFor(path);
    absl::Status status = stats::WriteSmoothQuantActScales(set, temp);
    if (!status.ok()) {
      std::remove(temp.c_str());
      return status;
    }
    return RenameIntoPlace(temp, path);
  }
  return WriteFileAtomically(
      path, stats::MllmDistributionJson(set, format == StatsFormat::kMllm
                                                 ? stats::Mode::kMllm
                                                 : stats::Mode::kAbs));
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  absl::Status s = qcal::WriteFileAtomically(path, content);
  // An --out that cannot be created is the user's to fix.
  if (s.code() == absl::StatusCode::kPermissionDenied) return UsageError(s.message());
  return s;
}

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

}  // namespace qcal::client
