// A proxy that needs no forward pass: the expected quantization error of every tensor
// at every threshold, estimated from the key sketch alone.
//
// This is an ESTIMATE. For one tensor quantized at step q (scale / 127 as fake_quant.h
// computes it: the input step rounded to 5 decimals, the output step not) the noise
// power is sum over sketch buckets of count * e(v), v the bucket's representative:
//   clipped and v beyond the int8 range [-128 q, 127 q]:  (distance to the range)^2
//                                                          (clamping error)
//   not clipped and round(v / q) beyond [-128, 127]:       0 (the shadow path keeps
//                                                          those values in float)
//   |v| < q / 2:                                           v^2 (rounds to 0)
//   otherwise:                                             q^2 / 12 (uniform rounding)
// The signal power is the exact sum of squares (per-channel sumsq), and
//   SQNR_dB = 10 log10(signal / noise).
// Bucket representatives are within 0.39 % of the values they stand for, and rounding
// noise is not exactly uniform for values of a few steps, so the figure is a guide
// for ranking thresholds, not a measurement. (mllm's simulation, unlike a shadow
// runtime, also rounds the not-clipped values beyond the range; the proxy follows the
// runtime.) A degenerate step (0, see fake_quant.h) gives noise +inf, SQNR -inf; zero
// noise gives SQNR +inf.
//
// No libtorch. Thread-safe (pure functions).
#ifndef QCAL_COMMON_QUANT_PROXY_H_
#define QCAL_COMMON_QUANT_PROXY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/quant/clip.h"
#include "common/quant/shadow.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"

namespace qcal::quant {

struct NoiseEstimate {
  double noise = 0;   // sum of squared errors over all values
  double signal = 0;  // sum of squares over all values (exact)
  double mse() const;      // noise / values (0 when empty)
  double sqnr_db() const;  // 10 log10(signal / noise), see above
  uint64_t values = 0;
};

// The estimate for one tensor at quantization step `step` (as fake_quant.h computes
// it), clamped (clipped) or not.
NoiseEstimate EstimateNoise(const stats::TensorStats& tensor, float step, bool clipped);

struct TensorProxy {
  bool clipped = false;
  float scale = 0;  // ori or top_0_1
  float step = 0;   // the quantization step used
  double mse = 0;
  double sqnr_db = 0;
};

struct LinearProxy {
  std::string name;
  TensorProxy input, output;
};

struct ProxyAtThreshold {
  double threshold = 0;
  std::vector<LinearProxy> linears;  // the order of ComputeScales (set order)
  double mean_sqnr_db = 0;  // mean over all finite tensor SQNRs (NaN when none)
  double min_sqnr_db = 0;   // minimum over all tensors
};

// The estimate of every tensor of `set` (linears with rows on both sides, as
// ComputeScales) at each threshold, clip decisions as clip.h makes them in `mode`.
// Each tensor's two possible states (clipped at ori, not clipped at top_0_1) are
// estimated once. INVALID_ARGUMENT for a bad threshold.
absl::StatusOr<std::vector<ProxyAtThreshold>> SqnrProxy(const stats::StatsSet& set,
                                                        stats::Mode mode,
                                                        const std::vector<double>& thresholds);

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_PROXY_H_
