// Turning an evaluation request and a calibrated job's statistics into the work an
// evaluation is made of: the variants (the float baseline, then the simulated W8A8
// model at each threshold with its clip decisions and scales) and the decision part
// of the result (mllm's counts and names, shadow layers, outlier channels, the
// sketch-only SQNR proxy). And, at the end, the metrics and the recommendation.
#ifndef QCAL_SERVER_CORE_EVALUATION_PLAN_H_
#define QCAL_SERVER_CORE_EVALUATION_PLAN_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/stats/stats_set.h"
#include "proto/qcal/v1/evaluation.pb.h"

namespace qcal::server {

// The default threshold list (mllm's).
std::vector<double> DefaultThresholds();

// Validates and normalizes `req` (defaults filled in): thresholds ascending and > 0,
// mode, budget, metric. INVALID_ARGUMENT naming the field.
absl::Status NormalizeEvaluateRequest(v1::EvaluateRequest* req);

struct EvaluationPlan {
  std::vector<v1::EvaluateTaskPayload> variants;  // [0] = float baseline
  v1::EvaluateResponse response;                  // decisions filled, metrics not
};

// Clip decisions of every threshold from `stats` (a complete calibration of a model
// with `config`).
absl::StatusOr<EvaluationPlan> PlanEvaluation(const v1::EvaluateRequest& req,
                                              const stats::StatsSet& stats,
                                              const ModelConfig& config);

// Fills res/perplexity of the float baseline and every threshold from the summed
// partials (one per variant, in variant order) and the recommendation.
absl::Status FinishEvaluation(const v1::EvaluateRequest& req,
                              const std::vector<v1::EvaluatePartial>& per_variant,
                              v1::EvaluateResponse* response);

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_EVALUATION_PLAN_H_
