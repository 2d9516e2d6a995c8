#include "common/quant/recommend.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace qcal::quant {

namespace {

constexpr double kSlack = 1e-12;

// 8 and 10000000 as integers, others as StrCat writes them.
std::string ThresholdText(double t) {
  if (std::trunc(t) == t && std::fabs(t) < 9.2e18) {
    return std::to_string(static_cast<int64_t>(t));
  }
  return absl::StrCat(t);
}

}  // namespace

const char* BudgetMetricName(BudgetMetric metric) {
  return metric == BudgetMetric::kAccuracy ? "accuracy" : "perplexity";
}

absl::StatusOr<Recommendation> Recommend(const std::vector<ThresholdOutcome>& outcomes,
                                         double float_res, double float_perplexity,
                                         const RecommendOptions& options) {
  if (!std::isfinite(options.budget) || options.budget < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget must be a finite number >= 0, got ", options.budget));
  }
  const bool accuracy = options.metric == BudgetMetric::kAccuracy;
  const double base = accuracy ? float_res : float_perplexity;
  if (!std::isfinite(base) || (!accuracy && !(base > 0))) {
    return absl::InvalidArgumentError(absl::StrCat("float baseline ",
                                                   BudgetMetricName(options.metric),
                                                   " is not usable: ", base));
  }
  const ThresholdOutcome* best = nullptr;
  for (const ThresholdOutcome& o : outcomes) {
    const double loss = accuracy ? float_res - o.res : o.perplexity / float_perplexity - 1.0;
    if (!(loss <= options.budget + kSlack)) continue;  // NaN never qualifies
    if (best == nullptr || o.shadow_layers < best->shadow_layers ||
        (o.shadow_layers == best->shadow_layers && o.threshold > best->threshold)) {
      best = &o;
    }
  }
  Recommendation r;
  const std::string within =
      accuracy ? absl::StrCat("accuracy within ", options.budget, " of the float model's ",
                              float_res)
               : absl::StrCat("perplexity within ", options.budget * 100,
                              " % of the float model's ", float_perplexity);
  if (best == nullptr) {
    r.reason = absl::StrCat("no threshold keeps ", within, "; no recommendation");
    return r;
  }
  r.threshold = best->threshold;
  r.shadow_layers = best->shadow_layers;
  r.reason = absl::StrCat("threshold ", ThresholdText(best->threshold), " has the fewest shadow layers (",
                          best->shadow_layers, ") with ", within, " (res ", best->res,
                          ", perplexity ", best->perplexity, ")");
  return r;
}

}  // namespace qcal::quant
