// The sketch-only error proxy against the error actually measured by fake-quantizing
// the raw values, and its sanity: a not-clipped tensor (finer step, outliers kept) is
// estimated better than the same tensor clipped, and raising the threshold never
// improves any tensor's estimate.
#include "common/quant/proxy.h"

#include <cmath>
#include <iostream>
#include <random>

#include "common/quant/fake_quant.h"
#include "common/quant/quant_test_util.h"
#include "gtest/gtest.h"

namespace qcal::quant {
namespace {

using stats::Mode;

// Measured sum of squared errors of quantizing `values` at `step` (as the proxy
// defines it: not-clipped values beyond int8 are kept exactly).
double MeasuredNoise(const std::vector<float>& values, float step, bool clipped) {
  double noise = 0;
  for (float x : values) {
    const double q = std::nearbyint(static_cast<double>(x) / step);
    if (!clipped && (q > 127 || q < -128)) continue;
    const double d = FakeQuantize(x, step, clipped) - static_cast<double>(x);
    noise += d * d;
  }
  return noise;
}

double Db(double signal, double noise) { return 10 * std::log10(signal / noise); }

TEST(ProxyTest, EstimateTracksMeasuredErrorOnGaussianWithOutliers) {
  const int64_t rows = 4000, channels = 64;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(rows * channels);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      v[r * channels + c] = normal(rng) * (c == 5 ? 40.0f : 1.0f);  // one outlier channel
    }
  }
  stats::TensorStats t(channels);
  ASSERT_TRUE(t.AddRows(v.data(), rows).ok());
  double signal = 0;
  for (float x : v) signal += static_cast<double>(x) * x;
  const float absmax = t.AbsMax();
  for (float scale : {absmax, absmax / 4, 3.0f, 1.0f}) {
    for (bool clipped : {true, false}) {
      for (float step : {OutputStep(scale), InputStep(scale)}) {
        const NoiseEstimate e = EstimateNoise(t, step, clipped);
        EXPECT_NEAR(e.signal, signal, 1e-9 * signal);
        EXPECT_EQ(e.values, v.size());
        const double measured = Db(signal, MeasuredNoise(v, step, clipped));
        EXPECT_NEAR(e.sqnr_db(), measured, 0.5)
            << "scale " << scale << (clipped ? " clipped" : " not clipped") << " step " << step;
      }
    }
  }
  // Clipping at ori vs keeping outliers at a scale 4x finer.
  const double clipped = EstimateNoise(t, OutputStep(absmax), true).sqnr_db();
  const double shadow = EstimateNoise(t, OutputStep(absmax / 4), false).sqnr_db();
  EXPECT_GT(shadow, clipped + 6);
}

TEST(ProxyTest, DegenerateCases) {
  stats::TensorStats t(2);
  const float row[2] = {0.5f, -0.25f};
  ASSERT_TRUE(t.AddRows(row, 1).ok());
  EXPECT_EQ(EstimateNoise(t, 0.0f, true).sqnr_db(), -INFINITY);  // step rounded to 0
  EXPECT_EQ(InputStep(1e-5f), 0.0f);  // mllm's 5-decimal rounding of 1e-5 / 127
  EXPECT_EQ(EstimateNoise(stats::TensorStats(2), 0.1f, true).noise, 0.0);
  EXPECT_EQ(EstimateNoise(stats::TensorStats(2), 0.1f, true).mse(), 0.0);
}

class ProxyRealDataTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ProxyRealDataTest, EstimateNearMeasuredAndMonotoneInThreshold) {
  testing::ReferenceActivations ref;
  ASSERT_NO_FATAL_FAILURE(testing::LoadReference(GetParam(), &ref));
  double worst = 0;
  for (Mode mode : {Mode::kAbs, Mode::kMllm}) {
    absl::StatusOr<std::vector<ProxyAtThreshold>> p =
        SqnrProxy(ref.set, mode, DefaultThresholds());
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_EQ(p->size(), DefaultThresholds().size());
    for (size_t k = 0; k < p->size(); ++k) {
      const ProxyAtThreshold& at = (*p)[k];
      EXPECT_EQ(at.threshold, DefaultThresholds()[k]);
      absl::StatusOr<ClipResult> clips = DecideClips(ref.set, at.threshold, mode);
      ASSERT_TRUE(clips.ok());
      ASSERT_EQ(at.linears.size(), ref.linears.size());
      double min = INFINITY;
      for (size_t i = 0; i < at.linears.size(); ++i) {
        const LinearProxy& lp = at.linears[i];
        ASSERT_EQ(lp.name, ref.linears[i].name);
        EXPECT_EQ(lp.input.clipped, clips->linears[i].clip_input);
        EXPECT_EQ(lp.output.clipped, clips->linears[i].clip_output);
        EXPECT_EQ(lp.input.scale, clips->linears[i].input_scale);
        EXPECT_EQ(lp.input.step, InputStep(lp.input.scale));
        EXPECT_EQ(lp.output.step, OutputStep(lp.output.scale));
        min = std::min({min, lp.input.sqnr_db, lp.output.sqnr_db});
        // Against the error measured on the raw values.
        for (bool input : {true, false}) {
          const TensorProxy& tp = input ? lp.input : lp.output;
          const std::vector<float>& raw =
              input ? ref.linears[i].input.values : ref.linears[i].output.values;
          if (!(tp.step > 0)) continue;
          double signal = 0;
          for (float x : raw) signal += static_cast<double>(x) * x;
          const double measured = Db(signal, MeasuredNoise(raw, tp.step, tp.clipped));
          worst = std::max(worst, std::fabs(tp.sqnr_db - measured));
          EXPECT_NEAR(tp.sqnr_db, measured, 2.0) << lp.name << (input ? " input" : " output");
        }
        // Monotone: a larger threshold never gives a better estimate.
        if (k > 0) {
          const LinearProxy& prev = (*p)[k - 1].linears[i];
          EXPECT_LE(lp.input.sqnr_db, prev.input.sqnr_db + 1e-9) << lp.name;
          EXPECT_LE(lp.output.sqnr_db, prev.output.sqnr_db + 1e-9) << lp.name;
        }
      }
      EXPECT_EQ(at.min_sqnr_db, min);
      if (k > 0) {
        EXPECT_LE(at.mean_sqnr_db, (*p)[k - 1].mean_sqnr_db + 1e-9);
      }
    }
    std::cout << GetParam() << " " << stats::ModeName(mode) << ": mean SQNR estimate "
              << p->front().mean_sqnr_db << " dB at t=" << p->front().threshold << ", "
              << p->back().mean_sqnr_db << " dB at t=" << p->back().threshold << "\n";
  }
  std::cout << GetParam() << ": largest |estimate - measured| " << worst << " dB\n";
}

INSTANTIATE_TEST_SUITE_P(Models, ProxyRealDataTest,
                         ::testing::Values("llama-tiny", "llama-small"));

}  // namespace
}  // namespace qcal::quant
