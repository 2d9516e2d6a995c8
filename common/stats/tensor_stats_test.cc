#include "common/stats/tensor_stats.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/stats/stats_test_util.h"
#include "common/stats/summary.h"
#include "gtest/gtest.h"

namespace qcal::stats {
namespace {

using testing::AbsSums;
using testing::AllDists;
using testing::Dist;
using testing::DistName;
using testing::ExactMoments;
using testing::ExactRank;
using testing::Generate;
using testing::Identical;
using testing::RelErr;
using testing::SumsClose;

constexpr double kMaxRelErr = 0.005;        // required: 0.5 %
constexpr double kDenormalAbsErr = 0x1p-133;  // bucket width below FLT_MIN

// Adds `data` (rows x channels) in chunks of random row counts (1 row included).
void AddInRandomChunks(TensorStats& stats, const std::vector<float>& data,
                       int64_t channels, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t rows = static_cast<int64_t>(data.size()) / channels;
  int64_t r = 0;
  while (r < rows) {
    const int64_t n = std::min<int64_t>(rows - r, 1 + static_cast<int64_t>(rng() % 97));
    ASSERT_TRUE(stats.AddRows(data.data() + r * channels, n).ok());
    r += n;
  }
}

// Checks a sketch answer against the exact value: exact where promised, else
// relative error <= 0.5 % (absolute below FLT_MIN). Returns the relative error.
double CheckValue(float got, float want, bool exact, const std::string& what) {
  if (exact) {
    EXPECT_EQ(got, want) << what;
    return 0.0;
  }
  if (std::fabs(want) < FLT_MIN) {
    EXPECT_LE(std::fabs(static_cast<double>(got) - want), kDenormalAbsErr) << what;
    return 0.0;
  }
  const double err = RelErr(got, want);
  EXPECT_LE(err, kMaxRelErr) << what << ": got " << got << " want " << want;
  return err;
}

TEST(TensorStatsTest, QuantilesMatchExactSortOnHeavyTailedData) {
  double worst = 0.0;
  std::string worst_where;
  for (Dist dist : AllDists()) {
    for (auto [rows, channels] : {std::pair<int64_t, int64_t>{2000, 64}, {150, 777}}) {
      const std::vector<float> data = Generate(dist, rows, channels, 42 + rows);
      TensorStats stats(channels);
      AddInRandomChunks(stats, data, channels, 7);
      const uint64_t n = data.size();
      ASSERT_EQ(stats.num_values(), n);
      for (Mode mode : {Mode::kMllm, Mode::kAbs}) {
        const bool abs = mode == Mode::kAbs;
        std::vector<float> sorted = data;
        if (abs) {
          for (float& v : sorted) v = std::fabs(v);
        }
        std::sort(sorted.begin(), sorted.end());
        std::vector<uint64_t> ranks = {0, 1, 2, n / 1000, n / 100, n / 10, n / 4, n / 2,
                                       3 * n / 4, n - n / 100, n - n / 1000, n - 2, n - 1,
                                       MllmRank(n, kTop01Threshold)};
        std::mt19937_64 rng(3);
        for (int i = 0; i < 200; ++i) ranks.push_back(rng() % n);
        for (uint64_t r : ranks) {
          absl::StatusOr<float> got = ValueAtRank(stats, mode, r);
          ASSERT_TRUE(got.ok()) << got.status();
          // Exact: the extremes in signed order, the top in abs order, and the bottom
          // in abs order when all values have one sign.
          const bool one_sign = *std::min_element(data.begin(), data.end()) >= 0 ||
                                *std::max_element(data.begin(), data.end()) <= 0;
          const bool exact = r == n - 1 || (!abs && r == 0) || (abs && r == 0 && one_sign);
          const std::string where = std::string(DistName(dist)) + " " + ModeName(mode) +
                                    " " + std::to_string(channels) + "ch rank " +
                                    std::to_string(r) + "/" + std::to_string(n);
          const double err = CheckValue(*got, sorted[r], exact, where);
          if (err > worst) {
            worst = err;
            worst_where = where;
          }
        }
        // mllm's numbers, with np.partition's reference implementation (nth_element).
        const uint64_t k = MllmRank(n, kTop01Threshold);
        absl::StatusOr<Summary> summary = Summarize(stats, mode);
        ASSERT_TRUE(summary.ok());
        EXPECT_EQ(summary->ori, ExactRank(data, n - 1, abs)) << DistName(dist);
        const float exact_top = ExactRank(data, k, abs);
        CheckValue(summary->top_0_1, exact_top, false,
                   std::string(DistName(dist)) + " top_0_1");
      }
    }
  }
  std::cout << "largest quantile relative error (synthetic heavy-tailed): " << worst
            << " at " << worst_where << "\n";
  ::testing::Test::RecordProperty("max_quantile_rel_err", std::to_string(worst));
}

TEST(TensorStatsTest, QuantileUsesLowerNearestRank) {
  const std::vector<float> data = Generate(Dist::kLogNormal, 333, 30, 5);
  TensorStats stats(30);
  ASSERT_TRUE(stats.AddRows(data.data(), 333).ok());
  std::vector<float> sorted = data;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(*stats.Quantile(0.0), sorted.front());
  EXPECT_EQ(*stats.Quantile(1.0), sorted.back());
  for (double q : {0.001, 0.1, 0.5, 0.9, 0.999}) {
    const size_t r = static_cast<size_t>(std::floor(q * (sorted.size() - 1)));
    CheckValue(*stats.Quantile(q), sorted[r], false, "q=" + std::to_string(q));
  }
  EXPECT_EQ(stats.Quantile(1.5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Quantile(std::nan("")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TensorStatsTest, MllmRankMatchesPython) {
  // int(n * (1 - 0.001)) - 1 evaluated by CPython, negative wrapped as an index.
  const std::vector<std::pair<uint64_t, uint64_t>> cases = {
      {1, 0},       {2, 0},          {999, 997},          {1000, 998},
      {1001, 998},  {2112, 2108},    {135168, 135031},    {2097152, 2095053}};
  for (auto [n, k] : cases) EXPECT_EQ(MllmRank(n, kTop01Threshold), k) << n;
  EXPECT_EQ(MllmRank(1000, 0.0), 999u);
}

TEST(TensorStatsTest, SummaryMomentsMatchExactComputation) {
  for (Dist dist : AllDists()) {
    const std::vector<float> data = Generate(dist, 500, 96, 11);
    TensorStats stats(96);
    AddInRandomChunks(stats, data, 96, 1);
    const testing::Moments want = ExactMoments(data);
    absl::StatusOr<Summary> s = Summarize(stats, Mode::kMllm);
    ASSERT_TRUE(s.ok());
    EXPECT_LE(RelErr(s->mean, want.mean), 1e-9) << DistName(dist);
    EXPECT_LE(RelErr(s->std, want.std), 1e-9) << DistName(dist);
    EXPECT_EQ(s->min, *std::min_element(data.begin(), data.end()));
    EXPECT_EQ(s->max, *std::max_element(data.begin(), data.end()));
    EXPECT_EQ(s->rows, 500);
    EXPECT_EQ(s->num_values, 500u * 96u);
  }
}

TEST(TensorStatsTest, PerChannelStatsMatchNaiveComputation) {
  const int64_t rows = 300, channels = 1100;  // > one channel block
  const std::vector<float> data = Generate(Dist::kLlmLike, rows, channels, 9);
  TensorStats stats(channels);
  AddInRandomChunks(stats, data, channels, 2);
  for (int64_t c = 0; c < channels; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    double s = 0, ss = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const float v = data[static_cast<size_t>(r * channels + c)];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      s += v;
      ss += static_cast<double>(v) * v;
    }
    ASSERT_EQ(stats.min()[c], lo) << c;
    ASSERT_EQ(stats.max()[c], hi) << c;
    ASSERT_EQ(stats.absmax(c), std::max(std::fabs(lo), std::fabs(hi))) << c;
    // Same order of additions: bitwise equal.
    ASSERT_EQ(stats.sum()[c], s) << c;
    ASSERT_EQ(stats.sumsq()[c], ss) << c;
  }
  EXPECT_EQ(stats.count(), rows);
}

TEST(TensorStatsTest, ChunkedAddRowsIsBitwiseIdenticalToOneCall) {
  for (int64_t channels : {1, 7, 777, 5000}) {
    const int64_t rows = channels == 5000 ? 40 : 600;
    const std::vector<float> data = Generate(Dist::kZerosAndTiny, rows, channels, 4);
    TensorStats once(channels);
    ASSERT_TRUE(once.AddRows(data.data(), rows).ok());
    for (uint32_t seed : {1u, 2u, 3u}) {
      TensorStats chunked(channels);
      AddInRandomChunks(chunked, data, channels, seed);
      EXPECT_TRUE(Identical(once, chunked)) << channels << " channels, seed " << seed;
    }
    TensorStats by_row(channels);
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(by_row.AddRows(data.data() + r * channels, 1).ok());
    }
    EXPECT_TRUE(Identical(once, by_row)) << channels;
  }
}

// A partial as a GPU computes it: amin/amax/sum over rows in double, bincount of keys.
struct Partial {
  int64_t rows;
  std::vector<float> min, max;
  std::vector<double> sum, sumsq;
  std::vector<int64_t> counts;
};
Partial NaivePartial(const float* data, int64_t rows, int64_t channels) {
  Partial p{rows,
            std::vector<float>(channels, INFINITY),
            std::vector<float>(channels, -INFINITY),
            std::vector<double>(channels, 0.0),
            std::vector<double>(channels, 0.0),
            std::vector<int64_t>(kNumKeys, 0)};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      const float v = data[r * channels + c];
      p.min[c] = std::min(p.min[c], v);
      p.max[c] = std::max(p.max[c], v);
      p.sum[c] += v;
      p.sumsq[c] += static_cast<double>(v) * v;
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      ++p.counts[bits >> 16];
    }
  }
  return p;
}

absl::Status AddNaivePartial(TensorStats& stats, const Partial& p) {
  return stats.AddPartial(p.rows, p.min.data(), p.max.data(), p.sum.data(),
                          p.sumsq.data(), p.counts.data());
}

TEST(TensorStatsTest, AddPartialMatchesAddRows) {
  for (Dist dist : {Dist::kZerosAndTiny, Dist::kLlmLike, Dist::kStudentT1}) {
    const int64_t channels = 130;
    const std::vector<float> a = Generate(dist, 70, channels, 1);
    const std::vector<float> b = Generate(dist, 45, channels, 2);
    TensorStats by_rows(channels), by_partial(channels);
    ASSERT_TRUE(by_rows.AddRows(a.data(), 70).ok());
    ASSERT_TRUE(by_rows.AddRows(b.data(), 45).ok());
    ASSERT_TRUE(AddNaivePartial(by_partial, NaivePartial(a.data(), 70, channels)).ok());
    ASSERT_TRUE(AddNaivePartial(by_partial, NaivePartial(b.data(), 45, channels)).ok());
    EXPECT_TRUE(Identical(by_rows, by_partial, /*sums=*/false)) << DistName(dist);
    std::vector<float> all = a;
    all.insert(all.end(), b.begin(), b.end());
    EXPECT_TRUE(SumsClose(by_rows, by_partial, 1e-14, AbsSums(all, channels)));
  }
}

TEST(TensorStatsTest, AddPartialRejectsInconsistentPartials) {
  const int64_t channels = 16;
  const std::vector<float> data = Generate(Dist::kCauchy, 20, channels, 3);
  const Partial good = NaivePartial(data.data(), 20, channels);
  TensorStats stats(channels);
  ASSERT_TRUE(AddNaivePartial(stats, good).ok());
  const TensorStats before = stats;
  auto expect_rejected = [&](Partial p, const char* what) {
    const absl::Status s = AddNaivePartial(stats, p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_TRUE(Identical(stats, before)) << what;
  };
  Partial p = good;
  p.counts[KeyOf(data[0])] += 1;
  expect_rejected(p, "counts sum too high");
  p = good;
  p.counts[KeyOf(data[0])] -= 1;
  expect_rejected(p, "counts sum too low");
  p = good;
  p.counts[KeyOf(data[0])] -= 1;
  p.counts[KeyOf(INFINITY)] += 1;
  expect_rejected(p, "count on the Inf key");
  p = good;
  p.counts[0x1234] = -1;  // no Cauchy value is ~1e-27
  p.counts[0x1235] = 1;
  expect_rejected(p, "negative count");
  p = good;
  std::swap(p.min[3], p.max[3]);
  expect_rejected(p, "min > max");
  p = good;
  p.max[2] = NAN;
  expect_rejected(p, "NaN max");
  p = good;
  p.sum[2] = INFINITY;
  expect_rejected(p, "Inf sum");
  p = good;
  p.max[5] = p.max[5] * 8 + 1000;  // in an empty bucket
  expect_rejected(p, "max outside the sketch");
  p = good;
  p.rows = 19;
  expect_rejected(p, "rows disagree with counts");
  EXPECT_EQ(stats.AddPartial(3, nullptr, nullptr, nullptr, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(stats.AddPartial(0, nullptr, nullptr, nullptr, nullptr, nullptr).ok());
}

TEST(TensorStatsTest, MergeIsOrderIndependent) {
  const int64_t channels = 50;
  const std::vector<int64_t> rows = {17, 1, 230, 64, 99};
  std::vector<std::vector<float>> parts;
  std::vector<TensorStats> partials;
  std::vector<float> all;
  for (size_t i = 0; i < rows.size(); ++i) {
    parts.push_back(Generate(i % 2 ? Dist::kStudentT1 : Dist::kZerosAndTiny, rows[i],
                             channels, static_cast<uint32_t>(100 + i)));
    partials.emplace_back(channels);
    ASSERT_TRUE(partials.back().AddRows(parts.back().data(), rows[i]).ok());
    all.insert(all.end(), parts.back().begin(), parts.back().end());
  }
  TensorStats whole(channels);
  ASSERT_TRUE(whole.AddRows(all.data(), static_cast<int64_t>(all.size()) / channels).ok());
  const std::vector<double> abs_sums = AbsSums(all, channels);

  std::vector<size_t> order(partials.size());
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    TensorStats merged(channels);
    for (size_t i : order) ASSERT_TRUE(merged.Merge(partials[i]).ok());
    EXPECT_TRUE(Identical(merged, whole, /*sums=*/false));
    EXPECT_TRUE(SumsClose(merged, whole, 1e-12, abs_sums));
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 120);

  // Tree groupings: ((0+1)+(2+(3+4))) and (4+(3+(2+(1+0)))), merging into non-empty.
  TensorStats a = partials[0], b = partials[2], c = partials[3];
  ASSERT_TRUE(a.Merge(partials[1]).ok());
  ASSERT_TRUE(c.Merge(partials[4]).ok());
  ASSERT_TRUE(b.Merge(c).ok());
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_TRUE(Identical(a, whole, false));
  EXPECT_TRUE(SumsClose(a, whole, 1e-12, abs_sums));
  TensorStats d = partials[1];
  ASSERT_TRUE(d.Merge(partials[0]).ok());
  for (int i : {2, 3, 4}) {
    TensorStats e = partials[i];
    ASSERT_TRUE(e.Merge(d).ok());
    d = e;
  }
  EXPECT_TRUE(Identical(d, whole, false));
  EXPECT_TRUE(SumsClose(d, whole, 1e-12, abs_sums));
}

TEST(TensorStatsTest, MergeWithMismatchedChannelsFails) {
  TensorStats a(8), b(9);
  const std::vector<float> data(72, 1.5f);
  ASSERT_TRUE(a.AddRows(data.data(), 9).ok());
  ASSERT_TRUE(b.AddRows(data.data(), 8).ok());
  const TensorStats before = a;
  EXPECT_EQ(a.Merge(b).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Identical(a, before));
}

TEST(TensorStatsTest, SignedZerosMergeCommutatively) {
  const std::vector<float> neg(4, -0.0f), pos(4, 0.0f);
  TensorStats a(2), b(2);
  ASSERT_TRUE(a.AddRows(neg.data(), 2).ok());
  ASSERT_TRUE(b.AddRows(pos.data(), 2).ok());
  TensorStats ab = a, ba = b;
  ASSERT_TRUE(ab.Merge(b).ok());
  ASSERT_TRUE(ba.Merge(a).ok());
  EXPECT_TRUE(Identical(ab, ba));
  EXPECT_FALSE(std::signbit(ab.min()[0]));  // -0 is recorded as +0
  EXPECT_EQ(*ab.ValueAtRank(3), 0.0f);
}

TEST(TensorStatsTest, NonFiniteValuesAreRejectedAndLeaveStateUnchanged) {
  const int64_t channels = 4096;  // 16 rows per internal chunk: row 37 is in the third
  const std::vector<float> good = Generate(Dist::kLlmLike, 50, channels, 8);
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    for (int64_t bad_row : {0, 37}) {
      TensorStats stats(channels);
      ASSERT_TRUE(stats.AddRows(good.data(), 10).ok());
      const TensorStats before = stats;
      std::vector<float> data = good;
      data[static_cast<size_t>(bad_row * channels + 5)] = bad;
      const absl::Status s = stats.AddRows(data.data(), 50);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find("non-finite activation in row " +
                                 std::to_string(bad_row) + ", channel 5"),
                std::string::npos)
          << s;
      EXPECT_TRUE(Identical(stats, before));
      // The per-call scratch state was cleaned: the next call is exact.
      ASSERT_TRUE(stats.AddRows(good.data() + 10 * channels, 40).ok());
      TensorStats reference(channels);
      ASSERT_TRUE(reference.AddRows(good.data(), 50).ok());
      EXPECT_TRUE(Identical(stats, reference));
    }
  }
}

TEST(TensorStatsTest, EmptyAndInvalidUse) {
  TensorStats empty(4);
  EXPECT_EQ(empty.ValueAtRank(0).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(empty.AbsValueAtRank(0).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(empty.Quantile(0.5).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Summarize(empty, Mode::kAbs).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(empty.AbsMax(), 0.0f);
  EXPECT_EQ(empty.absmax(2), 0.0f);
  const float x[4] = {1, 2, 3, 4};
  EXPECT_EQ(empty.AddRows(x, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.AddRows(nullptr, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(empty.AddRows(nullptr, 0).ok());
  TensorStats huge(kMaxChannels + 1);
  EXPECT_EQ(huge.channels(), 0);
  EXPECT_EQ(huge.AddRows(x, 1).code(), absl::StatusCode::kFailedPrecondition);
  TensorStats none(0);
  EXPECT_EQ(none.AddRows(x, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.Merge(none).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(empty.AddRows(x, 1).ok());
  EXPECT_EQ(empty.ValueAtRank(4).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*empty.ValueAtRank(0), 1.0f);
  EXPECT_EQ(*empty.ValueAtRank(3), 4.0f);
  EXPECT_EQ(*empty.AbsValueAtRank(0), 1.0f);  // one sign: exact
}

TEST(TensorStatsTest, MergeWithItselfDoublesCounts) {
  const std::vector<float> data = Generate(Dist::kCauchy, 10, 3, 1);
  TensorStats a(3);
  ASSERT_TRUE(a.AddRows(data.data(), 10).ok());
  TensorStats b = a;
  ASSERT_TRUE(b.Merge(a).ok());
  ASSERT_TRUE(a.Merge(a).ok());
  EXPECT_TRUE(Identical(a, b));
  EXPECT_EQ(a.count(), 20);
  EXPECT_EQ(a.sketch().total(), 60u);
}

}  // namespace
}  // namespace qcal::stats
