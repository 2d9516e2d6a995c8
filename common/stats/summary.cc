#include "common/stats/summary.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace qcal::stats {

const char* ModeName(Mode mode) { return mode == Mode::kAbs ? "abs" : "mllm"; }

uint64_t MllmRank(uint64_t n, double threshold) {
  const double percentage = 1.0 - threshold;  // Python: 1 - threshold
  int64_t k = static_cast<int64_t>(static_cast<double>(n) * percentage) - 1;
  if (k < 0) k += static_cast<int64_t>(n);  // Python negative index
  return static_cast<uint64_t>(std::clamp<int64_t>(k, 0, static_cast<int64_t>(n) - 1));
}

absl::StatusOr<float> ValueAtRank(const TensorStats& stats, Mode mode, uint64_t r) {
  return mode == Mode::kAbs ? stats.AbsValueAtRank(r) : stats.ValueAtRank(r);
}

absl::StatusOr<float> Quantile(const TensorStats& stats, Mode mode, double q) {
  return mode == Mode::kAbs ? stats.AbsQuantile(q) : stats.Quantile(q);
}

absl::StatusOr<float> MllmValue(const TensorStats& stats, Mode mode, double threshold) {
  if (!(threshold >= 0.0 && threshold <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold ", threshold, " not in [0, 1]"));
  }
  if (stats.empty()) return absl::OutOfRangeError("empty tensor statistics");
  return ValueAtRank(stats, mode, MllmRank(stats.num_values(), threshold));
}

double Mean(const TensorStats& stats) {
  if (stats.empty()) return 0.0;
  double total = 0.0;
  for (double s : stats.sum()) total += s;
  return total / static_cast<double>(stats.num_values());
}

double Std(const TensorStats& stats) {
  if (stats.empty()) return 0.0;
  const double n = static_cast<double>(stats.count());
  const double mean = Mean(stats);
  double within = 0.0, between = 0.0;
  for (size_t c = 0; c < stats.sum().size(); ++c) {
    const double s = stats.sum()[c];
    within += std::max(0.0, stats.sumsq()[c] - s * s / n);
    const double d = s / n - mean;
    between += n * d * d;
  }
  return std::sqrt((within + between) / static_cast<double>(stats.num_values()));
}

absl::StatusOr<Summary> Summarize(const TensorStats& stats, Mode mode) {
  if (stats.empty()) return absl::OutOfRangeError("empty tensor statistics");
  Summary out;
  out.rows = stats.count();
  out.num_values = stats.num_values();
  out.min = stats.Min();
  out.max = stats.Max();
  out.absmax = stats.AbsMax();
  out.mean = Mean(stats);
  out.std = Std(stats);
  absl::StatusOr<float> ori = MllmValue(stats, mode, 0.0);
  if (!ori.ok()) return ori.status();
  absl::StatusOr<float> top = MllmValue(stats, mode, kTop01Threshold);
  if (!top.ok()) return top.status();
  out.ori = *ori;
  out.top_0_1 = *top;
  return out;
}

}  // namespace qcal::stats
