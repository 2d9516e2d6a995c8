// The recommended threshold: the one with the fewest shadow layers whose quality stays
// within a budget of the float baseline.
//
// No libtorch. Thread-safe (pure functions).
#ifndef QCAL_COMMON_QUANT_RECOMMEND_H_
#define QCAL_COMMON_QUANT_RECOMMEND_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qcal::quant {

enum class BudgetMetric {
  kAccuracy,    // qualifies when float_res - res <= budget (absolute)
  kPerplexity,  // qualifies when perplexity / float_perplexity - 1 <= budget (relative)
};
const char* BudgetMetricName(BudgetMetric metric);  // "accuracy" / "perplexity"

struct RecommendOptions {
  BudgetMetric metric = BudgetMetric::kAccuracy;
  double budget = 0.01;  // >= 0; see BudgetMetric
};

// One evaluated threshold.
struct ThresholdOutcome {
  double threshold = 0;
  double res = 0;         // last-token accuracy
  double perplexity = 0;
  int64_t shadow_layers = 0;  // number of shadow layers at this threshold
};

struct Recommendation {
  std::optional<double> threshold;  // none when no threshold qualifies
  int64_t shadow_layers = 0;        // of the recommended threshold
  std::string reason;               // one sentence, for reports
};

// Among the outcomes within budget of the float baseline (a slack of 1e-12 absorbs
// decimal rounding, so that e.g. 0.50 - 0.49 <= 0.01 holds), the one with the fewest
// shadow layers, ties broken by the larger threshold. A NaN metric never qualifies.
// No qualifying threshold gives a Recommendation without a threshold whose reason
// says so. INVALID_ARGUMENT for a negative or non-finite budget, or a non-finite float
// baseline of the metric used.
absl::StatusOr<Recommendation> Recommend(const std::vector<ThresholdOutcome>& outcomes,
                                         double float_res, double float_perplexity,
                                         const RecommendOptions& options = {});

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_RECOMMEND_H_
