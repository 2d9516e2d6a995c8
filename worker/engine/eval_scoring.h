// Scoring one sample's logits into quant::EvalMetrics (see common/quant/metrics.h):
// mllm's last-token accuracy and the next-token negative log-likelihood.
//
// libtorch; internal to worker/engine. Thread-safe (no shared state).
#ifndef QCAL_WORKER_ENGINE_EVAL_SCORING_H_
#define QCAL_WORKER_ENGINE_EVAL_SCORING_H_

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "common/quant/metrics.h"

namespace qcal {

// Adds sample `ids` (L tokens) scored from its logits [L, V] (float32, any device):
// the prediction for the last token is argmax(logits[L-2]) (first index on ties), and
// the NLL of tokens 1..L-1 is logsumexp(logits[t]) - logits[t][ids[t+1]] computed in
// double (rows in chunks of at most 2^24 values). A sample of one token adds nothing.
// The result depends only on the logits and ids (never on other samples).
// INVALID_ARGUMENT when the shapes do not fit; INTERNAL for a libtorch failure.
absl::Status ScoreSample(const at::Tensor& logits, const std::vector<int32_t>& ids,
                         quant::EvalMetrics* metrics);

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_EVAL_SCORING_H_
