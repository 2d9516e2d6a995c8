#include "worker/engine/eval_scoring.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"

namespace qcal {

absl::Status ScoreSample(const at::Tensor& logits, const std::vector<int32_t>& ids,
                         quant::EvalMetrics* metrics) {
  const int64_t L = static_cast<int64_t>(ids.size());
  if (!logits.defined() || logits.dim() != 2 || logits.size(0) != L) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits must be [", L, ", vocab] for a sample of ", L, " tokens"));
  }
  if (L < 2) return absl::OkStatus();
  try {
    c10::InferenceMode guard;
    const int64_t V = logits.size(1);
    for (int32_t id : ids) {
      if (id < 0 || id >= V) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " outside [0, ", V, ")"));
      }
    }
    quant::EvalMetrics m;
    const int64_t pred = logits[L - 2].argmax().item<int64_t>();
    m.hits = pred == ids[L - 1] ? 1 : 0;
    m.total = 1;
    std::vector<int64_t> next(ids.begin() + 1, ids.end());
    const at::Tensor targets =
        at::tensor(next, at::kLong).to(logits.device()).unsqueeze(1);  // [L-1, 1]
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(V, 1));
    for (int64_t r0 = 0; r0 < L - 1; r0 += chunk) {
      const int64_t r1 = std::min(L - 1, r0 + chunk);
      const at::Tensor x = logits.slice(0, r0, r1).to(at::kDouble);
      const at::Tensor nll = x.logsumexp(-1) - x.gather(1, targets.slice(0, r0, r1)).squeeze(1);
      m.nll_sum += nll.sum().item<double>();
    }
    m.predictions = L - 1;
    metrics->Merge(m);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("scoring logits: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace qcal
