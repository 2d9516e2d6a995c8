#include "common/stats/key_sketch.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "common/stats/stats_test_util.h"
#include "gtest/gtest.h"

namespace qcal::stats {
namespace {

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(KeySketchTest, KeyIsTopSixteenBits) {
  EXPECT_EQ(KeyOf(1.0f), 0x3F80);
  EXPECT_EQ(KeyOf(-2.0f), 0xC000);
  EXPECT_EQ(KeyOf(0.0f), 0x0000);
  EXPECT_EQ(KeyOf(-0.0f), 0x8000);
  EXPECT_TRUE(IsNonFiniteKey(KeyOf(INFINITY)));
  EXPECT_TRUE(IsNonFiniteKey(KeyOf(-INFINITY)));
  EXPECT_TRUE(IsNonFiniteKey(KeyOf(NAN)));
  EXPECT_FALSE(IsNonFiniteKey(KeyOf(FLT_MAX)));
  EXPECT_FALSE(IsNonFiniteKey(KeyOf(-FLT_MAX)));
  EXPECT_EQ(KeyRepresentative(0x0000), 0.0f);
  EXPECT_EQ(KeyRepresentative(0x8000), 0.0f);
}

// Every value of every finite bucket is within the documented error of the bucket's
// representative: relative 2^-7/(2+2^-7) (+ float rounding) for normal floats,
// absolute 2^-133 for denormals.
TEST(KeySketchTest, RepresentativeErrorBoundHoldsForEveryBucket) {
  const double bound = std::ldexp(1.0, -7) / (2.0 + std::ldexp(1.0, -7));
  double worst = 0.0;
  for (uint32_t key = 0; key < static_cast<uint32_t>(kNumKeys); ++key) {
    if (IsNonFiniteKey(static_cast<uint16_t>(key))) continue;
    const float rep = KeyRepresentative(static_cast<uint16_t>(key));
    ASSERT_TRUE(std::isfinite(rep)) << key;
    for (uint32_t low : {0u, 1u, 0x7FFFu, 0x8000u, 0xFFFEu, 0xFFFFu}) {
      const float v = FromBits((key << 16) | low);
      ASSERT_EQ(KeyOf(v), key);
      if (rep != 0) {
        ASSERT_EQ(std::signbit(rep), std::signbit(v)) << key;
      }
      const double err = std::fabs(static_cast<double>(rep) - v);
      if (std::fabs(v) < FLT_MIN) {
        ASSERT_LE(err, std::ldexp(1.0, -133)) << key;
      } else {
        const double rel = err / std::fabs(v);
        ASSERT_LE(rel, bound + std::ldexp(1.0, -23)) << std::hex << key;
        worst = std::max(worst, rel);
      }
    }
  }
  std::cout << "largest representative relative error over all buckets: " << worst
            << " (bound " << bound << ")\n";
  EXPECT_LT(worst, 0.005);
}

TEST(KeySketchTest, FromBucketsValidates) {
  EXPECT_TRUE(KeySketch::FromBuckets({1, 2, 0x8001}, {1, 5, 2}).ok());
  EXPECT_EQ(KeySketch::FromBuckets({1, 2}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KeySketch::FromBuckets({2, 1}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KeySketch::FromBuckets({2, 2}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KeySketch::FromBuckets({1, 2}, {1, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KeySketch::FromBuckets({0x7F80}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);  // +Inf
  EXPECT_EQ(KeySketch::FromBuckets({0xFFC0}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);  // NaN
  EXPECT_EQ(KeySketch::FromBuckets({1, 2}, {~uint64_t{0}, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);  // total overflows
}

// A reference multiset of keys for comparisons.
using KeyCounts = std::map<uint16_t, uint64_t>;

KeyCounts AsMap(const KeySketch& s) {
  KeyCounts m;
  for (size_t i = 0; i < s.keys().size(); ++i) m[s.keys()[i]] = s.counts()[i];
  return m;
}

uint16_t RandomFiniteKey(std::mt19937& rng) {
  for (;;) {
    const uint16_t k = static_cast<uint16_t>(rng());
    if (!IsNonFiniteKey(k)) return k;
  }
}

TEST(KeySketchTest, AddTableAndMergeAreExact) {
  std::mt19937 rng(1);
  auto table = std::make_unique<uint32_t[]>(kNumKeys);
  KeySketch a, b;
  KeyCounts ref_a, ref_b;
  for (int round = 0; round < 20; ++round) {
    // A narrow magnitude range, both signs.
    const uint16_t lo = static_cast<uint16_t>(rng() % 0x7F00);
    const uint16_t hi = static_cast<uint16_t>(std::min<uint32_t>(lo + rng() % 300, 0x7F7F));
    for (int i = 0; i < 500; ++i) {
      uint16_t k = static_cast<uint16_t>(lo + rng() % (hi - lo + 1));
      if (rng() & 1) k |= kSignKeyBit;
      ++table[k];
      ++ref_a[k];
    }
    a.AddAndClearTable(table.get(), lo, hi);
    ASSERT_TRUE(std::all_of(table.get(), table.get() + kNumKeys,
                            [](uint32_t c) { return c == 0; }));
    const uint16_t k = RandomFiniteKey(rng);
    const uint64_t n = 1 + rng() % 1000;
    b.Add(k, n);
    ref_b[k] += n;
  }
  EXPECT_EQ(AsMap(a), ref_a);
  EXPECT_EQ(AsMap(b), ref_b);
  EXPECT_TRUE(std::is_sorted(a.keys().begin(), a.keys().end()));
  KeySketch ab = a, ba = b;
  ab.Merge(b);
  ba.Merge(a);
  EXPECT_EQ(ab, ba);
  KeyCounts ref = ref_a;
  for (auto [k, n] : ref_b) ref[k] += n;
  EXPECT_EQ(AsMap(ab), ref);
  uint64_t total = 0;
  for (auto [k, n] : ref) total += n;
  EXPECT_EQ(ab.total(), total);
}

TEST(KeySketchTest, RankQueriesFollowValueOrder) {
  std::mt19937 rng(2);
  KeySketch s;
  std::vector<float> reps;  // one representative per value
  for (int i = 0; i < 300; ++i) {
    const uint16_t k = RandomFiniteKey(rng);
    const uint64_t n = 1 + rng() % 5;
    s.Add(k, n);
    for (uint64_t j = 0; j < n; ++j) reps.push_back(KeyRepresentative(k));
  }
  std::vector<float> sorted = reps;
  std::sort(sorted.begin(), sorted.end());
  std::vector<float> abs_sorted = reps;
  for (float& v : abs_sorted) v = std::fabs(v);
  std::sort(abs_sorted.begin(), abs_sorted.end());
  for (uint64_t r = 0; r < s.total(); ++r) {
    ASSERT_EQ(KeyRepresentative(s.KeyAtSignedRank(r)), sorted[r]) << r;
    ASSERT_EQ(KeyRepresentative(s.MagnitudeKeyAtAbsRank(r)), abs_sorted[r]) << r;
  }
}

}  // namespace
}  // namespace qcal::stats
