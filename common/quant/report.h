// A threshold evaluation brought together: for each threshold the clip decisions
// (clip.h), shadow layers, not-clipped linears and outlier channels (shadow.h), the
// sketch-only error proxy (proxy.h) and, once a forward evaluation has filled them in,
// the metrics (metrics.h); the float baseline and the recommendation (recommend.h).
// Written as mllm's model_res_acc.json and as qcal's own evaluation JSON.
//
// No libtorch. Thread-safe (pure functions over values).
#ifndef QCAL_COMMON_QUANT_REPORT_H_
#define QCAL_COMMON_QUANT_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/quant/clip.h"
#include "common/quant/metrics.h"
#include "common/quant/proxy.h"
#include "common/quant/recommend.h"
#include "common/quant/shadow.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"

namespace qcal::quant {

struct ThresholdReport {
  ClipResult clips;
  std::vector<int64_t> shadow_layers;
  std::vector<std::string> not_clipped_linears;
  std::vector<OutlierChannels> outliers;
  ProxyAtThreshold proxy;
  std::optional<EvalMetrics> metrics;  // set by the caller after evaluating
};

struct EvaluationReport {
  std::string model;  // the key of model_res_acc.json (mllm writes its --model_name)
  stats::Mode mode = stats::Mode::kAbs;
  std::optional<EvalMetrics> float_metrics;  // the float baseline, set by the caller
  std::vector<ThresholdReport> thresholds;   // in the order requested
  std::optional<RecommendOptions> recommend_options;
  std::optional<Recommendation> recommendation;
};

// Everything that needs no forward pass, for each threshold in order. INVALID_ARGUMENT
// for an empty list, a bad or repeated threshold, or a linear of `set` that is not a
// module of `config`'s model.
absl::StatusOr<EvaluationReport> AnalyzeThresholds(const stats::StatsSet& set,
                                                   const ModelConfig& config,
                                                   const std::string& model,
                                                   stats::Mode mode,
                                                   const std::vector<double>& thresholds);

// Fills report->recommendation (and recommend_options) from the metrics.
// FAILED_PRECONDITION when the float baseline or any threshold lacks metrics;
// INVALID_ARGUMENT as Recommend.
absl::Status RecommendThreshold(const RecommendOptions& options, EvaluationReport* report);

// The threshold as Python's json.dump writes it: an integral value as an int ("8",
// "10000000"), any other as Python's float repr ("1.5").
std::string ThresholdKey(double threshold);

// mllm's model_res_acc.json exactly as eval_quantize_threshold.py writes it
// (json.dump, indent 4, ensure_ascii False):
//   {"<model>": {"<t>": {"t01m_thre": t, "clip_input_num": n, "no_clip_input_num": n,
//                        "clip_output_num": n, "no_clip_output_num": n,
//                        "no_clip_input_name": [...], "no_clip_output_name": [...],
//                        "res": r}, ...}}
// thresholds in the report's order, keys per ThresholdKey. FAILED_PRECONDITION when a
// threshold has no metrics (mllm always has res).
absl::StatusOr<std::string> ModelResAccJson(const EvaluationReport& report);

// qcal's evaluation JSON (indent 2): model, mode, float metrics, and per threshold the
// mllm fields, metrics (res, perplexity and their partial sums; null when not
// evaluated), shadow layers (a list and the "{1, 2, 26}" string), not-clipped
// linears, per-linear decisions and scales with their proxy SQNR, outlier channels,
// the proxy's summary; then the recommendation (null when not computed). Non-finite
// numbers are written as null.
std::string EvaluationJson(const EvaluationReport& report);

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_REPORT_H_
