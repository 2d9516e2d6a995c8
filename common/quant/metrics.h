// Evaluation metrics of one model variant (float or simulated W8A8) on a corpus, as
// mergeable partial sums: workers compute them over disjoint samples, the coordinator
// adds them up.
//
//   res (mllm's Evaluator, LAMBADA style): for each sample, the label is its last token
//     and the prediction the argmax of the logits at the position before it;
//     res = hits / total.
//   perplexity: exp(nll_sum / predictions), with nll_sum the sum, in double, of the
//     next-token negative log-likelihood over positions 0..L-2 of every sample
//     (predicting tokens 1..L-1).
//
// No libtorch. Header-only; not thread-safe (a plain value type).
#ifndef QCAL_COMMON_QUANT_METRICS_H_
#define QCAL_COMMON_QUANT_METRICS_H_

#include <cmath>
#include <cstdint>
#include <limits>

namespace qcal::quant {

struct EvalMetrics {
  int64_t hits = 0;         // samples whose last token was predicted
  int64_t total = 0;        // samples scored (those with at least 2 tokens)
  double nll_sum = 0;       // nats
  int64_t predictions = 0;  // next-token predictions in nll_sum

  // Adds another partial (disjoint samples). Counts add exactly; nll_sum within
  // double rounding of any merge order.
  void Merge(const EvalMetrics& other) {
    hits += other.hits;
    total += other.total;
    nll_sum += other.nll_sum;
    predictions += other.predictions;
  }
  // hits / total; NaN when total is 0.
  double accuracy() const {
    return total == 0 ? std::numeric_limits<double>::quiet_NaN()
                      : static_cast<double>(hits) / static_cast<double>(total);
  }
  // exp(nll_sum / predictions); NaN when predictions is 0.
  double perplexity() const {
    return predictions == 0 ? std::numeric_limits<double>::quiet_NaN()
                            : std::exp(nll_sum / static_cast<double>(predictions));
  }
};

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_METRICS_H_
