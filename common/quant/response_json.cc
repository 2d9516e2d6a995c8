#include "common/quant/response_json.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/quant/report.h"

namespace qcal::quant {
namespace {

// Metrics whose accuracy() is exactly `res`: mllm's file holds res only, and the
// response keeps res, not hits and total. hits / samples reproduces a res computed
// as hits / samples bit for bit; otherwise a power-of-two total represents any res
// above 2^-10 exactly.
EvalMetrics MetricsWithAccuracy(double res, int64_t samples) {
  EvalMetrics m;
  if (!std::isfinite(res)) return m;  // total 0: accuracy() is NaN, written as null
  if (samples > 0) {
    m.total = samples;
    m.hits = std::llround(res * static_cast<double>(samples));
    if (static_cast<double>(m.hits) / static_cast<double>(m.total) == res) return m;
  }
  m.total = int64_t{1} << 62;
  m.hits = std::llround(std::ldexp(res, 62));
  return m;
}

}  // namespace

absl::StatusOr<std::string> ModelResAccJsonOf(const v1::EvaluateResponse& response,
                                              const std::string& model) {
  EvaluationReport report;
  report.model = model;
  report.mode = response.mode() == "mllm" ? stats::Mode::kMllm : stats::Mode::kAbs;
  for (const v1::ThresholdResult& r : response.thresholds()) {
    ThresholdReport t;
    t.clips.threshold = r.threshold();
    t.clips.clip_input_num = r.clip_input_num();
    t.clips.no_clip_input_num = r.no_clip_input_num();
    t.clips.clip_output_num = r.clip_output_num();
    t.clips.no_clip_output_num = r.no_clip_output_num();
    t.clips.no_clip_input_name.assign(r.no_clip_input_name().begin(),
                                      r.no_clip_input_name().end());
    t.clips.no_clip_output_name.assign(r.no_clip_output_name().begin(),
                                       r.no_clip_output_name().end());
    t.shadow_layers = std::vector<int64_t>(r.shadow_layers().begin(), r.shadow_layers().end());
    t.metrics = MetricsWithAccuracy(r.res(), response.samples());
    report.thresholds.push_back(std::move(t));
  }
  return ModelResAccJson(report);
}

}  // namespace qcal::quant
