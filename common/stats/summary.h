// Derived per-tensor statistics: what mllm's get_act_distribution.py reports (ori,
// top_0_1, mean, std) and what threshold evaluation needs, in two modes.
//
// mllm flattens all N values of a tensor into one array `a` and reports, for a
// threshold t, np.partition(a, k)[k] with k = int(N * (1 - t)) - 1 (Python indexing:
// k = -1 means the last element). ori is t = 0 (the maximum), top_0_1 is t = 0.001.
//   Mode::kMllm: on the signed values, exactly as mllm does (ori = exact max).
//   Mode::kAbs:  on |x|, which is what symmetric int8 needs (ori = exact absmax).
// ori is exact; other ranks come from the sketch (relative error <= 0.39 % for
// normal floats, see key_sketch.h).
#ifndef QCAL_COMMON_STATS_SUMMARY_H_
#define QCAL_COMMON_STATS_SUMMARY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/stats/tensor_stats.h"

namespace qcal::stats {

enum class Mode { kAbs, kMllm };

// mllm's outlier threshold for top_0_1.
inline constexpr double kTop01Threshold = 0.001;

// "abs" / "mllm".
const char* ModeName(Mode mode);

struct Summary {
  int64_t rows = 0;         // TensorStats::count()
  uint64_t num_values = 0;  // rows * channels
  float min = 0;            // exact
  float max = 0;            // exact
  float absmax = 0;         // exact
  double mean = 0;          // over all values
  double std = 0;           // population std (numpy np.std, ddof = 0)
  float ori = 0;            // exact max (kMllm) or absmax (kAbs)
  float top_0_1 = 0;        // value at MllmRank(num_values, 0.001) in the mode's order
};

// mllm's rank for a threshold: int(n * (1 - threshold)) - 1, with (1 - threshold)
// evaluated in double exactly as Python does, and a negative result wrapped as a
// Python index (k + n). Precondition: n >= 1, 0 <= threshold <= 1.
uint64_t MllmRank(uint64_t n, double threshold);

// The value mllm reports for `threshold` (see above). OUT_OF_RANGE when empty,
// INVALID_ARGUMENT unless 0 <= threshold <= 1.
absl::StatusOr<float> MllmValue(const TensorStats& stats, Mode mode, double threshold);

// Value at rank r in the mode's order (signed for kMllm, |x| for kAbs).
absl::StatusOr<float> ValueAtRank(const TensorStats& stats, Mode mode, uint64_t r);

// Quantile q in [0, 1] in the mode's order (lower nearest rank, see TensorStats).
absl::StatusOr<float> Quantile(const TensorStats& stats, Mode mode, double q);

// Mean over all values: sum of all per-channel sums / (count * channels). 0 when empty.
double Mean(const TensorStats& stats);
// Population std over all values from the per-channel sums: the within-channel and
// between-channel parts are added separately (each clamped at 0 against rounding),
// which avoids most cancellation. 0 when empty.
double Std(const TensorStats& stats);

// Everything above at once. OUT_OF_RANGE when the tensor is empty.
absl::StatusOr<Summary> Summarize(const TensorStats& stats, Mode mode);

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_SUMMARY_H_
