// The files a calibration produces from a StatsSet:
//   act_scales_distribution.json      mllm's format (Mode::kMllm, signed values)
//   act_scales_distribution_abs.json  same shape computed on |x| (Mode::kAbs)
//   act_scales.safetensors            SmoothQuant's per-input-channel absmax
#ifndef QCAL_COMMON_STATS_OUTPUTS_H_
#define QCAL_COMMON_STATS_OUTPUTS_H_

#include <string>

#include "absl/status/status.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"

namespace qcal::stats {

inline constexpr char kMllmDistributionFile[] = "act_scales_distribution.json";
inline constexpr char kAbsDistributionFile[] = "act_scales_distribution_abs.json";
inline constexpr char kActScalesFile[] = "act_scales.safetensors";

// mllm's act_scales_distribution.json (get_act_distribution.py), indent 4, linears in
// the set's order:
//   {"ori":     {"<name>": {"input": v, "output": v}, ...},
//    "top_0_1": {"<name>": {"input": v, "output": v}, ...},
//    "all_stat": {"<name>": {"input": {"mean": m, "std": s},
//                            "output": {"mean": m, "std": s}}, ...}}
// ori and top_0_1 are float32 values written as doubles (see summary.h for their
// definition per mode: kAbs computes them on |x|). mean / std are those of Summary:
// over the signed values in both modes (mllm's all_stat; a mean of |x| would need
// per-channel sums of |x|, which the statistics do not keep). Linears with no rows on either
// side (e.g. an MoE expert that got no token) are left out, as mllm never sees them.
std::string MllmDistributionJson(const StatsSet& set, Mode mode);

// Writes SmoothQuant's act_scales to `path` with WriteSafetensors: one F32 tensor of
// shape [in_channels] per linear with input rows, named exactly as the module,
// holding the per-input-channel absmax; metadata {"format": "pt"}.
absl::Status WriteSmoothQuantActScales(const StatsSet& set, const std::string& path);

// Creates `dir` if needed and writes the three files above into it, each through a
// temporary file renamed into place (a crash never leaves a partial file under a
// final name). Errors name the file.
absl::Status WriteCalibrationOutputs(const StatsSet& set, const std::string& dir);

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_OUTPUTS_H_
