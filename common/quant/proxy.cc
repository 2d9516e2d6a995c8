#include "common/quant/proxy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/quant/fake_quant.h"
#include "common/stats/key_sketch.h"

namespace qcal::quant {

double NoiseEstimate::mse() const {
  return values == 0 ? 0.0 : noise / static_cast<double>(values);
}

double NoiseEstimate::sqnr_db() const {
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

NoiseEstimate EstimateNoise(const stats::TensorStats& tensor, float step, bool clipped) {
  NoiseEstimate e;
  e.values = tensor.num_values();
  for (double s : tensor.sumsq()) e.signal += s;
  if (tensor.empty()) return e;
  if (!(step > 0) || !std::isfinite(step)) {
    e.noise = std::numeric_limits<double>::infinity();
    return e;
  }
  const double q = step;
  const double hi = kQMax * q, lo = kQMin * q;
  const double rounding = q * q / 12.0;
  const stats::KeySketch& sketch = tensor.sketch();
  for (size_t i = 0; i < sketch.keys().size(); ++i) {
    const double v = stats::KeyRepresentative(sketch.keys()[i]);
    const double n = static_cast<double>(sketch.counts()[i]);
    double err;
    if (clipped && v > hi) {
      err = (v - hi) * (v - hi);
    } else if (clipped && v < lo) {
      err = (lo - v) * (lo - v);
    } else if (!clipped && (v / q >= 127.5 || v / q < -128.5)) {
      err = 0;  // beyond int8: the shadow path keeps it
    } else if (std::fabs(v) < q / 2) {
      err = v * v;
    } else {
      err = rounding;
    }
    e.noise += n * err;
  }
  return e;
}

namespace {

TensorProxy ToProxy(bool clipped, float scale, float step, const NoiseEstimate& e) {
  return {clipped, scale, step, e.mse(), e.sqnr_db()};
}

// A tensor's two possible states.
struct TwoStates {
  TensorScales scales;
  float step_clipped, step_not;
  NoiseEstimate clipped, not_clipped;
};

TwoStates Estimate(const stats::TensorStats& t, const TensorScales& s, bool input) {
  TwoStates out;
  out.scales = s;
  out.step_clipped = input ? InputStep(s.ori) : OutputStep(s.ori);
  out.step_not = input ? InputStep(s.top_0_1) : OutputStep(s.top_0_1);
  out.clipped = EstimateNoise(t, out.step_clipped, true);
  out.not_clipped = EstimateNoise(t, out.step_not, false);
  return out;
}

TensorProxy At(const TwoStates& t, double threshold) {
  return IsClipped(t.scales, threshold)
             ? ToProxy(true, t.scales.ori, t.step_clipped, t.clipped)
             : ToProxy(false, t.scales.top_0_1, t.step_not, t.not_clipped);
}

}  // namespace

absl::StatusOr<std::vector<ProxyAtThreshold>> SqnrProxy(const stats::StatsSet& set,
                                                        stats::Mode mode,
                                                        const std::vector<double>& thresholds) {
  for (double t : thresholds) {
    if (absl::Status s = ValidateThreshold(t); !s.ok()) return s;
  }
  const std::vector<LinearScales> scales = ComputeScales(set, mode);
  struct Linear {
    const LinearScales* scales;
    TwoStates input, output;
  };
  std::vector<Linear> linears;
  linears.reserve(scales.size());
  for (const LinearScales& s : scales) {
    const stats::LinearStats* l = set.Find(s.name);  // present: ComputeScales took it from set
    linears.push_back({&s, Estimate(l->input, s.input, true), Estimate(l->output, s.output, false)});
  }
  std::vector<ProxyAtThreshold> out;
  for (double t : thresholds) {
    ProxyAtThreshold p;
    p.threshold = t;
    double sum = 0, min = std::numeric_limits<double>::infinity();
    int64_t finite = 0;
    for (const Linear& l : linears) {
      LinearProxy lp{l.scales->name, At(l.input, t), At(l.output, t)};
      for (const TensorProxy* tp : {&lp.input, &lp.output}) {
        min = std::min(min, tp->sqnr_db);
        if (std::isfinite(tp->sqnr_db)) {
          sum += tp->sqnr_db;
          ++finite;
        }
      }
      p.linears.push_back(std::move(lp));
    }
    p.mean_sqnr_db = finite == 0 ? std::numeric_limits<double>::quiet_NaN()
                                 : sum / static_cast<double>(finite);
    p.min_sqnr_db = linears.empty() ? std::numeric_limits<double>::quiet_NaN() : min;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace qcal::quant
