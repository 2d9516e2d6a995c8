#include "common/stats/outputs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal::stats {
namespace {

using Json = nlohmann::ordered_json;

// Summaries of both sides, or nothing when either side has no rows.
struct LinearSummary {
  const LinearStats* linear;
  Summary input;
  Summary output;
};

std::vector<LinearSummary> Summaries(const StatsSet& set, Mode mode) {
  std::vector<LinearSummary> out;
  for (const LinearStats& linear : set) {
    absl::StatusOr<Summary> in = Summarize(linear.input, mode);
    absl::StatusOr<Summary> o = Summarize(linear.output, mode);
    if (in.ok() && o.ok()) out.push_back({&linear, *in, *o});
  }
  return out;
}

}  // namespace

std::string MllmDistributionJson(const StatsSet& set, Mode mode) {
  const std::vector<LinearSummary> summaries = Summaries(set, mode);
  Json ori = Json::object(), top = Json::object(), all_stat = Json::object();
  for (const LinearSummary& s : summaries) {
    const std::string& name = s.linear->name;
    ori[name] = Json{{"input", static_cast<double>(s.input.ori)},
                     {"output", static_cast<double>(s.output.ori)}};
    top[name] = Json{{"input", static_cast<double>(s.input.top_0_1)},
                     {"output", static_cast<double>(s.output.top_0_1)}};
    all_stat[name] = Json{{"input", {{"mean", s.input.mean}, {"std", s.input.std}}},
                          {"output", {{"mean", s.output.mean}, {"std", s.output.std}}}};
  }
  Json root = Json::object();
  root["ori"] = std::move(ori);
  root["top_0_1"] = std::move(top);
  root["all_stat"] = std::move(all_stat);
  return root.dump(4);
}

absl::Status WriteSmoothQuantActScales(const StatsSet& set, const std::string& path) {
  std::vector<TensorToWrite> tensors;
  for (const LinearStats& linear : set) {
    if (linear.input.empty()) continue;
    const std::vector<float> absmax = linear.input.AbsMaxPerChannel();
    tensors.push_back(Float32Tensor(linear.name,
                                    {static_cast<int64_t>(absmax.size())},
                                    absmax.data()));
  }
  return WriteSafetensors(path, tensors, {{"format", "pt"}});
}

absl::Status WriteCalibrationOutputs(const StatsSet& set, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  const std::filesystem::path base(dir);
  QCAL_RETURN_IF_ERROR(WriteFileAtomically((base / kMllmDistributionFile).string(),
                                           MllmDistributionJson(set, Mode::kMllm)));
  QCAL_RETURN_IF_ERROR(WriteFileAtomically((base / kAbsDistributionFile).string(),
                                           MllmDistributionJson(set, Mode::kAbs)));
  return WriteSmoothQuantActScales(set, (base / kActScalesFile).string());
}

}  // namespace qcal::stats
