#include "server/core/evaluation_plan.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/quant/clip.h"
#include "common/quant/proxy.h"
#include "common/quant/recommend.h"
#include "common/quant/shadow.h"
#include "common/status_macros.h"

namespace qcal::server {
namespace {

absl::StatusOr<stats::Mode> ParseMode(const std::string& m) {
  if (m == "abs") return stats::Mode::kAbs;
  if (m == "mllm") return stats::Mode::kMllm;
  return absl::InvalidArgumentError(absl::StrCat("mode \"", m, "\" is not abs or mllm"));
}

absl::StatusOr<quant::BudgetMetric> ParseMetric(const std::string& m) {
  if (m == "res" || m == "accuracy") return quant::BudgetMetric::kAccuracy;
  if (m == "ppl" || m == "perplexity") return quant::BudgetMetric::kPerplexity;
  return absl::InvalidArgumentError(
      absl::StrCat("budget_metric \"", m, "\" is not res (accuracy) or ppl (perplexity)"));
}

}  // namespace

std::vector<double> DefaultThresholds() { return quant::DefaultThresholds(); }

absl::Status NormalizeEvaluateRequest(v1::EvaluateRequest* req) {
  if (req->thresholds().empty()) {
    for (double t : DefaultThresholds()) req->add_thresholds(t);
  }
  if (req->thresholds_size() > 1000) return absl::InvalidArgumentError("more than 1000 thresholds");
  for (int i = 0; i < req->thresholds_size(); ++i) {
    const double t = req->thresholds(i);
    if (!std::isfinite(t) || t <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("thresholds[", i, "] = ", t, " must be > 0"));
    }
    if (i > 0 && t <= req->thresholds(i - 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "thresholds must be strictly ascending (", req->thresholds(i - 1), " then ", t, ")"));
    }
  }
  if (req->mode().empty()) req->set_mode("abs");
  QCAL_RETURN_IF_ERROR(ParseMode(req->mode()).status());
  if (!req->has_budget()) req->set_budget(0.01);
  if (!std::isfinite(req->budget()) || req->budget() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("budget ", req->budget(), " must be >= 0"));
  }
  if (req->budget_metric().empty()) req->set_budget_metric("res");
  return ParseMetric(req->budget_metric()).status();
}

absl::StatusOr<EvaluationPlan> PlanEvaluation(const v1::EvaluateRequest& req,
                                              const stats::StatsSet& stats,
                                              const ModelConfig& config) {
  QCAL_ASSIGN_OR_RETURN(stats::Mode mode, ParseMode(req.mode()));
  const std::vector<double> thresholds(req.thresholds().begin(), req.thresholds().end());
  const std::vector<quant::LinearScales> scales = quant::ComputeScales(stats, mode);
  QCAL_ASSIGN_OR_RETURN(std::vector<quant::ProxyAtThreshold> proxies,
                        quant::SqnrProxy(stats, mode, thresholds));
  EvaluationPlan plan;
  plan.response.set_job_id(req.job_id());
  plan.response.set_mode(req.mode());
  v1::EvaluateTaskPayload baseline;
  baseline.set_float_baseline(true);
  plan.variants.push_back(baseline);
  for (size_t ti = 0; ti < thresholds.size(); ++ti) {
    QCAL_ASSIGN_OR_RETURN(quant::ClipResult clips, quant::DecideClips(scales, thresholds[ti]));
    QCAL_ASSIGN_OR_RETURN(std::vector<int64_t> shadow, quant::ShadowLayers(clips, config));
    QCAL_ASSIGN_OR_RETURN(std::vector<quant::OutlierChannels> outliers,
                          quant::FindOutlierChannels(stats, clips));
    std::map<std::pair<std::string, int>, const quant::OutlierChannels*> outlier_of;
    for (const auto& o : outliers) outlier_of[{o.name, o.side == quant::Side::kInput ? 0 : 1}] = &o;

    v1::ThresholdResult* r = plan.response.add_thresholds();
    r->set_threshold(thresholds[ti]);
    r->set_clip_input_num(static_cast<int32_t>(clips.clip_input_num));
    r->set_no_clip_input_num(static_cast<int32_t>(clips.no_clip_input_num));
    r->set_clip_output_num(static_cast<int32_t>(clips.clip_output_num));
    r->set_no_clip_output_num(static_cast<int32_t>(clips.no_clip_output_num));
    for (const auto& n : clips.no_clip_input_name) r->add_no_clip_input_name(n);
    for (const auto& n : clips.no_clip_output_name) r->add_no_clip_output_name(n);
    for (int64_t l : shadow) r->add_shadow_layers(static_cast<int32_t>(l));
    v1::EvaluateTaskPayload variant;
    variant.set_threshold(thresholds[ti]);
    for (size_t i = 0; i < clips.linears.size(); ++i) {
      const quant::LinearClip& c = clips.linears[i];
      v1::LinearClip* lc = r->add_linears();
      lc->set_name(c.name);
      lc->set_clip_input(c.clip_input);
      lc->set_clip_output(c.clip_output);
      lc->set_input_scale(c.input_scale);
      lc->set_output_scale(c.output_scale);
      *variant.add_linears() = *lc;  // what a worker needs: decisions and scales
      if (i < proxies[ti].linears.size() && proxies[ti].linears[i].name == c.name) {
        lc->set_input_sqnr_db(proxies[ti].linears[i].input.sqnr_db);
        lc->set_output_sqnr_db(proxies[ti].linears[i].output.sqnr_db);
      }
      if (auto it = outlier_of.find({c.name, 0}); it != outlier_of.end()) {
        for (int64_t ch : it->second->channels) lc->add_input_outlier_channels(static_cast<int32_t>(ch));
      }
      if (auto it = outlier_of.find({c.name, 1}); it != outlier_of.end()) {
        for (int64_t ch : it->second->channels) lc->add_output_outlier_channels(static_cast<int32_t>(ch));
      }
    }
    plan.variants.push_back(std::move(variant));
  }
  return plan;
}

absl::Status FinishEvaluation(const v1::EvaluateRequest& req,
                              const std::vector<v1::EvaluatePartial>& per_variant,
                              v1::EvaluateResponse* response) {
  if (per_variant.size() != static_cast<size_t>(response->thresholds_size()) + 1) {
    return absl::InternalError("evaluation variants and thresholds disagree");
  }
  auto metrics = [](const v1::EvaluatePartial& p) {
    const double res = p.total() ? static_cast<double>(p.hits()) / static_cast<double>(p.total()) : NAN;
    const double ppl = p.predictions() ? std::exp(p.nll_sum() / static_cast<double>(p.predictions())) : NAN;
    return std::make_pair(res, ppl);
  };
  auto [float_res, float_ppl] = metrics(per_variant[0]);
  response->set_float_res(float_res);
  response->set_float_perplexity(float_ppl);
  response->set_samples(per_variant[0].total());
  std::vector<quant::ThresholdOutcome> outcomes;
  for (int i = 0; i < response->thresholds_size(); ++i) {
    auto [res, ppl] = metrics(per_variant[i + 1]);
    v1::ThresholdResult* r = response->mutable_thresholds(i);
    r->set_res(res);
    r->set_perplexity(ppl);
    outcomes.push_back({r->threshold(), res, ppl, r->shadow_layers_size()});
  }
  quant::RecommendOptions o;
  QCAL_ASSIGN_OR_RETURN(o.metric, ParseMetric(req.budget_metric()));
  o.budget = req.budget();
  QCAL_ASSIGN_OR_RETURN(quant::Recommendation rec, quant::Recommend(outcomes, float_res, float_ppl, o));
  if (rec.threshold) response->set_recommended_threshold(*rec.threshold);
  response->set_recommendation_note(rec.reason);
  response->set_budget(o.budget);
  response->set_budget_metric(o.metric == quant::BudgetMetric::kPerplexity ? "ppl" : "res");
  return absl::OkStatus();
}

}  // namespace qcal::server
