#include "common/quant/report.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal::quant {
namespace {

using Json = nlohmann::ordered_json;

bool IsIntegral(double t) { return std::trunc(t) == t && std::fabs(t) < 9.2e18; }

// The threshold as a JSON number: int when integral (Python passes ints).
Json ThresholdJson(double t) {
  if (IsIntegral(t)) return Json(static_cast<int64_t>(t));
  return Json(t);
}

// Non-finite numbers as null.
Json Num(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

Json MetricsJson(const std::optional<EvalMetrics>& m) {
  if (!m) return Json(nullptr);
  return Json{{"res", Num(m->accuracy())},       {"perplexity", Num(m->perplexity())},
              {"hits", m->hits},                 {"total", m->total},
              {"nll_sum", Num(m->nll_sum)},      {"predictions", m->predictions}};
}

// mllm's return_dict fields (all but res), in its order.
void AddMllmFields(const ClipResult& c, Json* j) {
  (*j)["t01m_thre"] = ThresholdJson(c.threshold);
  (*j)["clip_input_num"] = c.clip_input_num;
  (*j)["no_clip_input_num"] = c.no_clip_input_num;
  (*j)["clip_output_num"] = c.clip_output_num;
  (*j)["no_clip_output_num"] = c.no_clip_output_num;
  (*j)["no_clip_input_name"] = c.no_clip_input_name;
  (*j)["no_clip_output_name"] = c.no_clip_output_name;
}

Json ProxyTensorJson(const TensorProxy& p) {
  return Json{{"step", static_cast<double>(p.step)}, {"mse", Num(p.mse)},
              {"sqnr_db", Num(p.sqnr_db)}};
}

}  // namespace

std::string ThresholdKey(double threshold) {
  if (IsIntegral(threshold)) return std::to_string(static_cast<int64_t>(threshold));
  return Json(threshold).dump();
}

absl::StatusOr<EvaluationReport> AnalyzeThresholds(const stats::StatsSet& set,
                                                   const ModelConfig& config,
                                                   const std::string& model,
                                                   stats::Mode mode,
                                                   const std::vector<double>& thresholds) {
  if (thresholds.empty()) return absl::InvalidArgumentError("no thresholds to evaluate");
  std::set<std::string> seen;
  for (double t : thresholds) {
    QCAL_RETURN_IF_ERROR(ValidateThreshold(t));
    if (!seen.insert(ThresholdKey(t)).second) {
      return absl::InvalidArgumentError(absl::StrCat("threshold ", t, " is repeated"));
    }
  }
  EvaluationReport report;
  report.model = model;
  report.mode = mode;
  const std::vector<LinearScales> scales = ComputeScales(set, mode);
  QCAL_ASSIGN_OR_RETURN(std::vector<ProxyAtThreshold> proxy, SqnrProxy(set, mode, thresholds));
  for (size_t i = 0; i < thresholds.size(); ++i) {
    ThresholdReport r;
    QCAL_ASSIGN_OR_RETURN(r.clips, DecideClips(scales, thresholds[i]));
    QCAL_ASSIGN_OR_RETURN(r.shadow_layers, ShadowLayers(r.clips, config));
    r.not_clipped_linears = NotClippedLinears(r.clips);
    QCAL_ASSIGN_OR_RETURN(r.outliers, FindOutlierChannels(set, r.clips));
    r.proxy = std::move(proxy[i]);
    report.thresholds.push_back(std::move(r));
  }
  return report;
}

absl::Status RecommendThreshold(const RecommendOptions& options, EvaluationReport* report) {
  if (!report->float_metrics) {
    return absl::FailedPreconditionError("the float baseline has not been evaluated");
  }
  std::vector<ThresholdOutcome> outcomes;
  for (const ThresholdReport& t : report->thresholds) {
    if (!t.metrics) {
      return absl::FailedPreconditionError(
          absl::StrCat("threshold ", t.clips.threshold, " has not been evaluated"));
    }
    outcomes.push_back({t.clips.threshold, t.metrics->accuracy(), t.metrics->perplexity(),
                        static_cast<int64_t>(t.shadow_layers.size())});
  }
  QCAL_ASSIGN_OR_RETURN(Recommendation r,
                        Recommend(outcomes, report->float_metrics->accuracy(),
                                  report->float_metrics->perplexity(), options));
  report->recommend_options = options;
  report->recommendation = std::move(r);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelResAccJson(const EvaluationReport& report) {
  Json results = Json::object();
  for (const ThresholdReport& t : report.thresholds) {
    if (!t.metrics) {
      return absl::FailedPreconditionError(
          absl::StrCat("threshold ", t.clips.threshold, " has no res (not evaluated)"));
    }
    Json j = Json::object();
    AddMllmFields(t.clips, &j);
    j["res"] = t.metrics->accuracy();
    results[ThresholdKey(t.clips.threshold)] = std::move(j);
  }
  Json root = Json::object();
  root[report.model] = std::move(results);
  return root.dump(4);
}

std::string EvaluationJson(const EvaluationReport& report) {
  Json root = Json::object();
  root["model"] = report.model;
  root["mode"] = stats::ModeName(report.mode);
  root["float"] = MetricsJson(report.float_metrics);
  Json thresholds = Json::array();
  for (const ThresholdReport& t : report.thresholds) {
    Json j = Json::object();
    j["threshold"] = ThresholdJson(t.clips.threshold);
    AddMllmFields(t.clips, &j);
    j["metrics"] = MetricsJson(t.metrics);
    j["res"] = t.metrics ? Num(t.metrics->accuracy()) : Json(nullptr);
    j["perplexity"] = t.metrics ? Num(t.metrics->perplexity()) : Json(nullptr);
    j["num_shadow_layers"] = t.shadow_layers.size();
    j["shadow_layers"] = t.shadow_layers;
    j["shadow_layers_cpp"] = FormatLayerSet(t.shadow_layers);
    j["not_clipped_linears"] = t.not_clipped_linears;
    Json linears = Json::array();
    for (size_t i = 0; i < t.clips.linears.size(); ++i) {
      const LinearClip& c = t.clips.linears[i];
      Json l{{"name", c.name},
             {"clip_input", c.clip_input},
             {"clip_output", c.clip_output},
             {"input_scale", static_cast<double>(c.input_scale)},
             {"output_scale", static_cast<double>(c.output_scale)}};
      if (i < t.proxy.linears.size() && t.proxy.linears[i].name == c.name) {
        l["proxy"] = Json{{"input", ProxyTensorJson(t.proxy.linears[i].input)},
                          {"output", ProxyTensorJson(t.proxy.linears[i].output)}};
      }
      linears.push_back(std::move(l));
    }
    j["linears"] = std::move(linears);
    Json outliers = Json::array();
    for (const OutlierChannels& o : t.outliers) {
      outliers.push_back(Json{{"name", o.name},
                              {"side", SideName(o.side)},
                              {"scale", static_cast<double>(o.scale)},
                              {"channels_total", o.channels_total},
                              {"channels", o.channels}});
    }
    j["outlier_channels"] = std::move(outliers);
    j["proxy"] = Json{{"mean_sqnr_db", Num(t.proxy.mean_sqnr_db)},
                      {"min_sqnr_db", Num(t.proxy.min_sqnr_db)}};
    thresholds.push_back(std::move(j));
  }
  root["thresholds"] = std::move(thresholds);
  if (report.recommendation && report.recommend_options) {
    const Recommendation& r = *report.recommendation;
    Json rec{{"metric", BudgetMetricName(report.recommend_options->metric)},
             {"budget", report.recommend_options->budget},
             {"threshold", r.threshold ? ThresholdJson(*r.threshold) : Json(nullptr)}};
    rec["num_shadow_layers"] = r.shadow_layers;
    const ThresholdReport* chosen = nullptr;
    for (const ThresholdReport& t : report.thresholds) {
      if (r.threshold && t.clips.threshold == *r.threshold) chosen = &t;
    }
    rec["shadow_layers"] = chosen ? Json(chosen->shadow_layers) : Json(nullptr);
    rec["shadow_layers_cpp"] =
        chosen ? Json(FormatLayerSet(chosen->shadow_layers)) : Json(nullptr);
    rec["reason"] = r.reason;
    root["recommendation"] = std::move(rec);
  } else {
    root["recommendation"] = nullptr;
  }
  return root.dump(2);
}

}  // namespace qcal::quant
