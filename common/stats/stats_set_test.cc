#include "common/stats/stats_set.h"

#include <string>
#include <vector>

#include "common/stats/stats_test_util.h"
#include "gtest/gtest.h"

namespace qcal::stats {
namespace {

using testing::Dist;
using testing::Generate;
using testing::Identical;

std::vector<std::string> Names(const StatsSet& set) {
  std::vector<std::string> out;
  for (const LinearStats& l : set) out.push_back(l.name);
  return out;
}

// Adds `rows` generated rows to both sides of `name`.
void Feed(StatsSet& set, const std::string& name, int64_t in, int64_t out, int64_t rows,
          uint32_t seed) {
  absl::StatusOr<LinearStats*> l = set.GetOrCreate(name, in, out);
  ASSERT_TRUE(l.ok()) << l.status();
  const std::vector<float> x = Generate(Dist::kStudentT2, rows, in, seed);
  const std::vector<float> y = Generate(Dist::kLlmLike, rows, out, seed + 1);
  ASSERT_TRUE((*l)->input.AddRows(x.data(), rows).ok());
  ASSERT_TRUE((*l)->output.AddRows(y.data(), rows).ok());
}

TEST(StatsSetTest, KeepsFirstInsertionOrder) {
  StatsSet set;
  const std::vector<std::string> order = {"model.layers.0.self_attn.q_proj",
                                          "model.layers.0.self_attn.k_proj", "lm_head",
                                          "a"};
  for (const std::string& n : order) ASSERT_TRUE(set.GetOrCreate(n, 4, 8).ok());
  ASSERT_TRUE(set.GetOrCreate("model.layers.0.self_attn.k_proj", 4, 8).ok());
  EXPECT_EQ(Names(set), order);
  EXPECT_EQ(set.size(), 4u);
  EXPECT_EQ(set.at(2).name, "lm_head");
  ASSERT_NE(set.Find("lm_head"), nullptr);
  EXPECT_EQ(set.Find("lm_head")->output.channels(), 8);
  EXPECT_EQ(set.Find("nope"), nullptr);
}

TEST(StatsSetTest, GetOrCreateReturnsTheSameStableEntry) {
  StatsSet set;
  LinearStats* first = *set.GetOrCreate("x", 3, 5);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(set.GetOrCreate("m" + std::to_string(i), 1, 1).ok());
  EXPECT_EQ(*set.GetOrCreate("x", 3, 5), first);
  EXPECT_EQ(set.GetOrCreate("x", 3, 6).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(set.GetOrCreate("", 3, 6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(set.GetOrCreate("y", 0, 6).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatsSetTest, MergeMergesSameNamesAndAppendsNewOnesInOtherOrder) {
  StatsSet a, b;
  Feed(a, "q", 16, 16, 10, 1);
  Feed(a, "k", 16, 8, 10, 2);
  ASSERT_TRUE(a.AddTokens(10).ok());
  Feed(b, "v", 16, 8, 7, 3);
  Feed(b, "k", 16, 8, 7, 4);
  Feed(b, "o", 16, 16, 7, 5);
  ASSERT_TRUE(b.AddTokens(7).ok());

  TensorStats k_in = a.Find("k")->input;
  ASSERT_TRUE(k_in.Merge(b.Find("k")->input).ok());

  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(Names(a), (std::vector<std::string>{"q", "k", "v", "o"}));
  EXPECT_EQ(a.tokens(), 17);
  EXPECT_EQ(a.Find("k")->input.count(), 17);
  EXPECT_TRUE(Identical(a.Find("k")->input, k_in));
  EXPECT_TRUE(Identical(a.Find("v")->output, b.Find("v")->output));
  EXPECT_EQ(a.Find("q")->input.count(), 10);
}

TEST(StatsSetTest, MergeMismatchChangesNothing) {
  StatsSet a, b;
  Feed(a, "q", 16, 16, 5, 1);
  Feed(a, "k", 16, 8, 5, 2);
  Feed(b, "new", 4, 4, 5, 3);
  Feed(b, "q", 16, 16, 5, 4);
  Feed(b, "k", 16, 9, 5, 5);  // output channels differ
  const StatsSet before = a;
  const absl::Status s = a.Merge(b);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("'k'"), std::string::npos) << s;
  EXPECT_EQ(Names(a), Names(before));
  EXPECT_TRUE(Identical(a.Find("q")->input, before.Find("q")->input));
}

TEST(StatsSetTest, MergeWithItselfDoubles) {
  StatsSet a;
  Feed(a, "q", 8, 8, 5, 1);
  ASSERT_TRUE(a.AddTokens(5).ok());
  ASSERT_TRUE(a.Merge(a).ok());
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(a.tokens(), 10);
  EXPECT_EQ(a.Find("q")->input.count(), 10);
}

TEST(StatsSetTest, TokensRejectNegative) {
  StatsSet a;
  EXPECT_EQ(a.AddTokens(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.tokens(), 0);
}

}  // namespace
}  // namespace qcal::stats
