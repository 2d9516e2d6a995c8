// Test-only helpers for the statistics tests: heavy-tailed data generators and
// independent (brute-force) reference computations. Header-only; never linked into
// qcal_stats.
#ifndef QCAL_COMMON_STATS_STATS_TEST_UTIL_H_
#define QCAL_COMMON_STATS_STATS_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/stats/tensor_stats.h"
#include "gtest/gtest.h"

namespace qcal::stats::testing {

enum class Dist {
  kStudentT1,     // Cauchy-like, 1 degree of freedom
  kStudentT2,
  kStudentT3,
  kCauchy,        // location 0.1, scale 0.5
  kLogNormal,     // exp(N(0, 2)) with a random sign
  kLlmLike,       // N(0, 1) with a few huge outlier channels and exact zeros
  kZerosAndTiny,  // many exact zeros (+0 and -0), denormals and normal values
};

inline std::vector<Dist> AllDists() {
  return {Dist::kStudentT1, Dist::kStudentT2, Dist::kStudentT3, Dist::kCauchy,
          Dist::kLogNormal, Dist::kLlmLike,   Dist::kZerosAndTiny};
}

inline const char* DistName(Dist d) {
  switch (d) {
    case Dist::kStudentT1: return "student_t1";
    case Dist::kStudentT2: return "student_t2";
    case Dist::kStudentT3: return "student_t3";
    case Dist::kCauchy: return "cauchy";
    case Dist::kLogNormal: return "lognormal_signed";
    case Dist::kLlmLike: return "llm_like";
    case Dist::kZerosAndTiny: return "zeros_and_tiny";
  }
  return "?";
}

// rows x channels row-major values, all finite.
inline std::vector<float> Generate(Dist dist, int64_t rows, int64_t channels,
                                   uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> out(static_cast<size_t>(rows * channels));
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  // Outlier channels for kLlmLike: a few channels 50-2000x larger, some always
  // positive (massive activations), and channel 1 exactly zero half of the time.
  std::vector<double> scale(static_cast<size_t>(channels), 1.0);
  std::vector<double> offset(static_cast<size_t>(channels), 0.0);
  if (dist == Dist::kLlmLike) {
    for (int i = 0; i < std::max<int64_t>(1, channels / 50); ++i) {
      const size_t c = static_cast<size_t>(rng() % static_cast<uint64_t>(channels));
      scale[c] = 50.0 + 1950.0 * uniform(rng);
      if (i % 2 == 0) offset[c] = 3.0 * scale[c];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      double v = 0.0;
      switch (dist) {
        case Dist::kStudentT1:
        case Dist::kStudentT2:
        case Dist::kStudentT3: {
          const double dof = dist == Dist::kStudentT1 ? 1 : dist == Dist::kStudentT2 ? 2 : 3;
          std::student_t_distribution<double> t(dof);
          v = t(rng);
          break;
        }
        case Dist::kCauchy: {
          std::cauchy_distribution<double> cauchy(0.1, 0.5);
          v = cauchy(rng);
          break;
        }
        case Dist::kLogNormal:
          v = std::exp(2.0 * normal(rng)) * ((rng() & 1) ? 1.0 : -1.0);
          break;
        case Dist::kLlmLike:
          v = offset[static_cast<size_t>(c)] + scale[static_cast<size_t>(c)] * normal(rng);
          if (c == 1 && (rng() & 1)) v = 0.0;
          break;
        case Dist::kZerosAndTiny: {
          const uint64_t pick = rng() % 8;
          if (pick == 0) v = 0.0;
          else if (pick == 1) v = -0.0;
          else if (pick == 2) v = (uniform(rng) - 0.5) * 1e-39;  // denormals
          else v = normal(rng) * std::exp(3.0 * normal(rng));
          break;
        }
      }
      // Clamp into float range: heavy tails may exceed it.
      v = std::clamp(v, -1e30, 1e30);
      out[static_cast<size_t>(r * channels + c)] = static_cast<float>(v);
    }
  }
  return out;
}

// The value at rank k of `values` sorted ascending (signed, or by |x|), by
// std::nth_element on a copy. For kAbs the magnitude is returned.
inline float ExactRank(std::vector<float> values, uint64_t k, bool abs) {
  if (abs) {
    for (float& v : values) v = std::fabs(v);
  }
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k),
                   values.end());
  return values[k];
}

// Relative error of `got` against `want` (0 when both are 0; Inf when only want is).
inline double RelErr(double got, double want) {
  if (got == want) return 0.0;
  return std::fabs(got - want) / std::fabs(want);
}

// Exact mean and population std of values, two-pass in long double.
struct Moments {
  double mean;
  double std;
};
inline Moments ExactMoments(const std::vector<float>& values) {
  long double s = 0;
  for (float v : values) s += v;
  const long double mean = s / static_cast<long double>(values.size());
  long double ss = 0;
  for (float v : values) ss += (v - mean) * (v - mean);
  return {static_cast<double>(mean),
          static_cast<double>(std::sqrt(ss / static_cast<long double>(values.size())))};
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Bitwise equality of everything (sums included unless `sums` is false).
inline ::testing::AssertionResult Identical(const TensorStats& a, const TensorStats& b,
                                            bool sums = true) {
  if (a.channels() != b.channels()) return ::testing::AssertionFailure() << "channels";
  if (a.count() != b.count()) {
    return ::testing::AssertionFailure() << "count " << a.count() << " vs " << b.count();
  }
  if (!SameBits(a.min(), b.min())) return ::testing::AssertionFailure() << "min differs";
  if (!SameBits(a.max(), b.max())) return ::testing::AssertionFailure() << "max differs";
  if (a.sketch() != b.sketch()) return ::testing::AssertionFailure() << "sketch differs";
  if (a.sketch().total() != b.sketch().total()) {
    return ::testing::AssertionFailure() << "sketch total differs";
  }
  if (sums && !SameBits(a.sum(), b.sum())) {
    return ::testing::AssertionFailure() << "sum differs";
  }
  if (sums && !SameBits(a.sumsq(), b.sumsq())) {
    return ::testing::AssertionFailure() << "sumsq differs";
  }
  return ::testing::AssertionSuccess();
}

// Per channel sum of |x| of row-major data: the scale against which rounding
// differences of a sum are measured (a sum of cancelling terms can be near 0).
inline std::vector<double> AbsSums(const std::vector<float>& data, int64_t channels) {
  std::vector<double> out(static_cast<size_t>(channels), 0.0);
  for (size_t i = 0; i < data.size(); ++i) out[i % out.size()] += std::fabs(data[i]);
  return out;
}

// Sums agree within `rel` * abs_sum[c] and sums of squares within `rel` relative
// (their terms are all >= 0).
inline ::testing::AssertionResult SumsClose(const TensorStats& a, const TensorStats& b,
                                            double rel,
                                            const std::vector<double>& abs_sum) {
  for (size_t c = 0; c < a.sum().size(); ++c) {
    if (std::fabs(a.sum()[c] - b.sum()[c]) > rel * abs_sum[c] ||
        std::fabs(a.sumsq()[c] - b.sumsq()[c]) > rel * std::fabs(b.sumsq()[c])) {
      return ::testing::AssertionFailure()
             << "channel " << c << ": sum " << a.sum()[c] << " vs " << b.sum()[c]
             << ", sumsq " << a.sumsq()[c] << " vs " << b.sumsq()[c];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace qcal::stats::testing

#endif  // QCAL_COMMON_STATS_STATS_TEST_UTIL_H_
