// StatsCollector: a LinearObserver that accumulates TensorStats for the input and the
// output of every linear module, over the non-padding rows of each batch only.
//
// Two paths, same figures: on CPU a fused single-pass kernel (TensorStats::AddRows);
// on other devices (and on CPU when `tensor_ops` is set, so tests exercise it) tensor
// operations (amin/amax/sum in double/bincount of the sketch keys) computed on the
// device, of which only O(channels + 65536) values travel to the host
// (TensorStats::AddPartial). Min, max, counts and sketch buckets are bitwise equal
// between the two paths; sums agree within rounding.
#ifndef QCAL_WORKER_ENGINE_STATS_COLLECTOR_H_
#define QCAL_WORKER_ENGINE_STATS_COLLECTOR_H_

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "common/stats/tensor_stats.h"
#include "worker/model/causal_lm.h"

namespace qcal {

class StatsCollector : public LinearObserver {
 public:
  // One (input, output) pair per entry of `linears`, in that order.
  StatsCollector(const std::vector<LinearModule>& linears, bool tensor_ops);

  // Rows of the next forward pass to count: flat indices into [B * T] (row-major) of
  // the valid positions, or undefined for "all rows".
  void SetValidRows(const at::Tensor& flat_valid_rows) { valid_rows_ = flat_valid_rows; }

  absl::Status OnLinear(int index, const at::Tensor& input, const at::Tensor& output) override;

  const std::vector<LinearModule>& linears() const { return linears_; }
  stats::TensorStats& input(int i) { return stats_[i].first; }
  stats::TensorStats& output(int i) { return stats_[i].second; }

 private:
  absl::Status Add(const std::string& what, const at::Tensor& x, stats::TensorStats* s);

  std::vector<LinearModule> linears_;
  bool tensor_ops_;
  at::Tensor valid_rows_;
  std::vector<std::pair<stats::TensorStats, stats::TensorStats>> stats_;
};

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_STATS_COLLECTOR_H_
