#include "server/store/stats_merge.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/store/store.h"
#include "server/store/store_test_util.h"

namespace qcal::server {
namespace {

using ::qcal::server::testing::Iota;
using ::qcal::server::testing::MakePartial;
using ::qcal::server::testing::MatchesReference;
using ::qcal::server::testing::MergeDirectly;
using ::qcal::server::testing::Partial;

constexpr char kName[] = "model.layers.0.mlp.down_proj";

std::vector<Partial> MakeParts(int n, int64_t in, int64_t out, int64_t rows = 16) {
  std::vector<Partial> parts;
  for (int i = 0; i < n; ++i) {
    parts.push_back(
        MakePartial(kName, in, out, rows + i, 100 + static_cast<uint32_t>(i)));
  }
  return parts;
}

std::vector<std::string> Bytes(const std::vector<Partial>& parts,
                               const std::vector<size_t>& order) {
  std::vector<std::string> out;
  for (size_t i : order) out.push_back(parts[i].bytes);
  return out;
}

TEST(MergeLinearStatsTest, EqualsDirectMergeInEveryOrder) {
  const std::vector<Partial> parts = MakeParts(5, 48, 80);
  std::vector<std::vector<size_t>> orders = {Iota(5), {4, 3, 2, 1, 0}, {2, 0, 4, 1, 3}};
  std::mt19937 rng(7);
  for (int i = 0; i < 5; ++i) {
    orders.push_back(Iota(5));
    std::shuffle(orders.back().begin(), orders.back().end(), rng);
  }
  for (const auto& order : orders) {
    const auto ref = MergeDirectly(parts, Iota(5));
    // All operands at once, no existing value.
    auto merged = MergeLinearStats(nullptr, Bytes(parts, order));
    ASSERT_TRUE(merged.ok()) << merged.status();
    EXPECT_TRUE(MatchesReference(*merged, kName, ref));
    // The first as existing value, the rest as operands.
    std::vector<std::string> rest = Bytes(parts, order);
    const std::string first = rest.front();
    rest.erase(rest.begin());
    merged = MergeLinearStats(&first, rest);
    ASSERT_TRUE(merged.ok()) << merged.status();
    EXPECT_TRUE(MatchesReference(*merged, kName, ref));
    // One at a time, feeding each result back as the existing value.
    std::string acc = Bytes(parts, order)[0];
    for (size_t i = 1; i < order.size(); ++i) {
      auto step = MergeLinearStats(&acc, {parts[order[i]].bytes});
      ASSERT_TRUE(step.ok()) << step.status();
      acc = *step;
    }
    EXPECT_TRUE(MatchesReference(acc, kName, ref));
  }
}

TEST(MergeLinearStatsTest, TreeMergeEqualsSequentialMerge) {
  const std::vector<Partial> parts = MakeParts(4, 32, 16);
  auto left = MergeLinearStats(nullptr, {parts[0].bytes, parts[1].bytes});
  auto right = MergeLinearStats(nullptr, {parts[2].bytes, parts[3].bytes});
  ASSERT_TRUE(left.ok() && right.ok());
  auto all = MergeLinearStats(&*left, {*right});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(MatchesReference(*all, kName, MergeDirectly(parts, Iota(4))));
}

TEST(MergeLinearStatsTest, WideLinear) {
  const std::vector<Partial> parts = MakeParts(3, 4096, 1024, 4);
  auto merged = MergeLinearStats(nullptr, Bytes(parts, {2, 0, 1}));
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE(MatchesReference(*merged, kName, MergeDirectly(parts, Iota(3))));
}

TEST(MergeLinearStatsTest, EmptyStatisticsMerge) {
  const Partial p = MakePartial(kName, 8, 4, 3, 1);
  const std::string empty =
      testing::Serialize(kName, stats::TensorStats(8), stats::TensorStats(4));
  auto merged = MergeLinearStats(&empty, {p.bytes, empty});
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE(MatchesReference(*merged, kName, MergeDirectly({p}, {0})));
}

TEST(MergeLinearStatsTest, SingleValueIsValidatedAndKept) {
  const Partial p = MakePartial(kName, 8, 4, 3, 1);
  auto merged = MergeLinearStats(nullptr, {p.bytes});
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(*merged, p.bytes);
  merged = MergeLinearStats(&p.bytes, {});
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(*merged, p.bytes);
  EXPECT_EQ(MergeLinearStats(nullptr, {"garbage"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MergeLinearStatsTest, NothingToMergeIsInvalid) {
  EXPECT_EQ(MergeLinearStats(nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MergeLinearStatsTest, NamesMustMatch) {
  const Partial a = MakePartial("a.q_proj", 8, 4, 3, 1);
  const Partial b = MakePartial("b.q_proj", 8, 4, 3, 2);
  auto merged = MergeLinearStats(&a.bytes, {b.bytes});
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(merged.status().message().find("'b.q_proj'"), std::string::npos)
      << merged.status();
  EXPECT_NE(merged.status().message().find("'a.q_proj'"), std::string::npos);
}

TEST(MergeLinearStatsTest, ChannelsMustMatch) {
  const Partial a = MakePartial(kName, 8, 4, 3, 1);
  const Partial wrong_in = MakePartial(kName, 9, 4, 3, 2);
  const Partial wrong_out = MakePartial(kName, 8, 5, 3, 3);
  auto merged = MergeLinearStats(&a.bytes, {wrong_in.bytes});
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(merged.status().message().find("input"), std::string::npos)
      << merged.status();
  merged = MergeLinearStats(nullptr, {a.bytes, wrong_out.bytes});
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(merged.status().message().find("output"), std::string::npos)
      << merged.status();
  EXPECT_NE(merged.status().message().find("operand 1"), std::string::npos)
      << merged.status();
}

TEST(MergeLinearStatsTest, EmptyNameIsInvalid) {
  const Partial a = MakePartial("", 8, 4, 3, 1);
  EXPECT_EQ(MergeLinearStats(nullptr, {a.bytes}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateLinearStats(a.bytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MergeLinearStatsTest, ValidateReturnsShape) {
  const Partial a = MakePartial(kName, 8, 4, 3, 1);
  auto shape = ValidateLinearStats(a.bytes);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->name, kName);
  EXPECT_EQ(shape->in_channels, 8);
  EXPECT_EQ(shape->out_channels, 4);
}

// Whatever the bytes, the result is a valid value or INVALID_ARGUMENT.
void ExpectSafe(const absl::StatusOr<std::string>& merged) {
  if (merged.ok()) {
    EXPECT_TRUE(ValidateLinearStats(*merged).ok());
  } else {
    EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument)
        << merged.status();
  }
}

TEST(MergeLinearStatsTest, CorruptBytesNeverCrash) {
  const Partial good = MakePartial(kName, 6, 5, 4, 1);
  const Partial other = MakePartial(kName, 6, 5, 2, 2);
  // Every truncation.
  for (size_t n = 0; n < good.bytes.size(); ++n) {
    const std::string cut = good.bytes.substr(0, n);
    ExpectSafe(MergeLinearStats(&cut, {other.bytes}));
    ExpectSafe(MergeLinearStats(&other.bytes, {cut}));
  }
  // Every single-bit flip.
  for (size_t i = 0; i < good.bytes.size() * 8; ++i) {
    std::string flipped = good.bytes;
    flipped[i / 8] = static_cast<char>(flipped[i / 8] ^ (1 << (i % 8)));
    ExpectSafe(MergeLinearStats(&other.bytes, {flipped}));
  }
  // Random bytes, and random bytes spliced into a valid value.
  std::mt19937 rng(42);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string noise(rng() % 200, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    ExpectSafe(MergeLinearStats(nullptr, {noise}));
    ExpectSafe(MergeLinearStats(&other.bytes, {noise}));
    std::string spliced = good.bytes;
    const size_t at = rng() % spliced.size();
    spliced.replace(at, std::min(noise.size(), spliced.size() - at), noise);
    ExpectSafe(MergeLinearStats(&other.bytes, {spliced}));
  }
}

TEST(FamilyNameTest, Names) {
  EXPECT_STREQ(FamilyName(Family::kJobs), "jobs");
  EXPECT_STREQ(FamilyName(Family::kStats), "stats");
  EXPECT_STREQ(FamilyName(Family::kMeta), "meta");
  EXPECT_STREQ(FamilyName(static_cast<Family>(17)), "?");
  EXPECT_FALSE(IsValidFamily(static_cast<Family>(kNumFamilies)));
}

}  // namespace
}  // namespace qcal::server
