#include "common/stats/stats_proto.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "common/stats/stats_test_util.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"

namespace qcal::stats {
namespace {

using testing::Dist;
using testing::Generate;
using testing::Identical;

StatsSet MakeSet() {
  StatsSet set;
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> linears = {
      {"model.layers.0.self_attn.q_proj", {32, 32}},
      {"model.layers.0.mlp.down_proj", {64, 32}},
      {"lm_head", {32, 100}}};
  uint32_t seed = 1;
  for (const auto& [name, ch] : linears) {
    LinearStats* l = *set.GetOrCreate(name, ch.first, ch.second);
    const std::vector<float> x = Generate(Dist::kZerosAndTiny, 40, ch.first, seed++);
    const std::vector<float> y = Generate(Dist::kLlmLike, 40, ch.second, seed++);
    EXPECT_TRUE(l->input.AddRows(x.data(), 40).ok());
    EXPECT_TRUE(l->output.AddRows(y.data(), 40).ok());
  }
  // An expert that got no token.
  EXPECT_TRUE(set.GetOrCreate("model.layers.0.block_sparse_moe.experts.3.w2", 64, 32).ok());
  EXPECT_TRUE(set.AddTokens(40).ok());
  return set;
}

TEST(StatsProtoTest, RoundTripIsExact) {
  const StatsSet set = MakeSet();
  v1::StatsSetProto proto;
  ToProto(set, &proto);
  // Through the wire format too.
  v1::StatsSetProto parsed;
  ASSERT_TRUE(parsed.ParseFromString(proto.SerializeAsString()));
  absl::StatusOr<StatsSet> back = StatsSetFromProto(parsed);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), set.size());
  EXPECT_EQ(back->tokens(), 40);
  for (size_t i = 0; i < set.size(); ++i) {
    EXPECT_EQ(back->at(i).name, set.at(i).name);
    EXPECT_TRUE(Identical(back->at(i).input, set.at(i).input)) << set.at(i).name;
    EXPECT_TRUE(Identical(back->at(i).output, set.at(i).output)) << set.at(i).name;
  }
  // Keys are delta-encoded: the first key as is, then strictly positive steps.
  const v1::KeySketchProto& sk = proto.linears(0).input().sketch();
  ASSERT_GT(sk.key_deltas_size(), 1);
  EXPECT_EQ(sk.key_deltas(0), set.at(0).input.sketch().keys()[0]);
  EXPECT_EQ(sk.key_deltas(1), static_cast<uint32_t>(set.at(0).input.sketch().keys()[1] -
                                                    set.at(0).input.sketch().keys()[0]));
}

// Each corruption of a valid proto must give INVALID_ARGUMENT naming the module.
TEST(StatsProtoTest, CorruptProtosAreRejectedWithTheModuleName) {
  v1::StatsSetProto good;
  ToProto(MakeSet(), &good);
  using Mutator = std::function<void(v1::StatsSetProto&)>;
  const std::vector<std::pair<const char*, Mutator>> cases = {
      {"min too short", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_min()->RemoveLast(); }},
      {"max too long", [](auto& p) { p.mutable_linears(1)->mutable_input()->add_max(1.0f); }},
      {"sum missing", [](auto& p) { p.mutable_linears(1)->mutable_input()->clear_sum(); }},
      {"sumsq too short", [](auto& p) { p.mutable_linears(1)->mutable_output()->mutable_sumsq()->RemoveLast(); }},
      {"channels zero", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_channels(0); }},
      {"channels negative", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_channels(-64); }},
      {"count negative", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_count(-1); }},
      {"count changed", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_count(41); }},
      {"count huge", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_count(int64_t{1} << 62); }},
      {"min > max", [](auto& p) { auto* t = p.mutable_linears(1)->mutable_input(); t->set_min(3, t->max(3) + std::fabs(t->max(3)) + 1); }},
      {"NaN min", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_min(0, NAN); }},
      {"Inf max", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_max(0, INFINITY); }},
      {"NaN sum", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_sum(0, NAN); }},
      {"negative sumsq", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_sumsq(0, -1); }},
      {"max beyond sketch", [](auto& p) { auto* t = p.mutable_linears(1)->mutable_output(); t->set_max(0, t->max(0) * 16 + 1e6f); }},
      {"count zero, arrays kept", [](auto& p) { p.mutable_linears(1)->mutable_input()->set_count(0); }},
      {"sketch count changed", [](auto& p) { auto* s = p.mutable_linears(1)->mutable_input()->mutable_sketch(); s->set_counts(0, s->counts(0) + 1); }},
      {"sketch count zero", [](auto& p) { auto* s = p.mutable_linears(1)->mutable_input()->mutable_sketch(); s->set_counts(1, 0); }},
      {"sketch keys unsorted (zero delta)", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_sketch()->set_key_deltas(2, 0); }},
      {"sketch key >= 65536", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_sketch()->set_key_deltas(1, 70000); }},
      {"sketch key delta huge", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_sketch()->set_key_deltas(1, 0xFFFFFFFFu); }},
      {"sketch lengths differ", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_sketch()->add_counts(1); }},
      {"sketch format unknown", [](auto& p) { p.mutable_linears(1)->mutable_input()->mutable_sketch()->set_format(static_cast<v1::SketchFormat>(7)); }},
      {"sketch Inf key", [](auto& p) {
         auto* s = p.mutable_linears(1)->mutable_input()->mutable_sketch();
         s->add_key_deltas(0x7F80u);  // beyond the last key: lands on an Inf/NaN key or >= 65536
         s->add_counts(1);
       }},
      {"channels huge, nothing else", [](auto& p) {
         auto* t = p.mutable_linears(1)->mutable_input();
         t->Clear();
         t->set_channels(int64_t{1} << 40);
       }},
      {"sketch emptied", [](auto& p) { p.mutable_linears(1)->mutable_input()->clear_sketch(); }},
  };
  for (const auto& [what, mutate] : cases) {
    v1::StatsSetProto bad = good;
    mutate(bad);
    const absl::StatusOr<StatsSet> got = StatsSetFromProto(bad);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_NE(got.status().message().find("model.layers.0.mlp.down_proj"), std::string::npos)
        << what << ": " << got.status();
  }
  v1::StatsSetProto dup = good;
  *dup.add_linears() = good.linears(0);
  EXPECT_EQ(StatsSetFromProto(dup).status().code(), absl::StatusCode::kInvalidArgument);
  v1::StatsSetProto unnamed = good;
  unnamed.mutable_linears(2)->clear_name();
  EXPECT_EQ(StatsSetFromProto(unnamed).status().code(), absl::StatusCode::kInvalidArgument);
  v1::StatsSetProto tokens = good;
  tokens.set_tokens(-5);
  EXPECT_EQ(StatsSetFromProto(tokens).status().code(), absl::StatusCode::kInvalidArgument);
}

// Random byte damage to the serialized form: parse may fail, FromProto may accept or
// reject, but nothing crashes, and whatever is accepted answers queries.
TEST(StatsProtoTest, RandomlyDamagedBytesNeverCrash) {
  v1::StatsSetProto good;
  ToProto(MakeSet(), &good);
  const std::string bytes = good.SerializeAsString();
  google::protobuf::LogSilencer silence;  // damaged UTF-8 in names is logged otherwise
  std::mt19937 rng(99);
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string damaged = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      damaged[rng() % damaged.size()] = static_cast<char>(rng());
    }
    v1::StatsSetProto parsed;
    if (!parsed.ParseFromString(damaged)) continue;
    absl::StatusOr<StatsSet> set = StatsSetFromProto(parsed);
    if (!set.ok()) {
      EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    ++accepted;
    for (const LinearStats& l : *set) {
      for (const TensorStats* t : {&l.input, &l.output}) {
        if (t->empty()) continue;
        EXPECT_TRUE(t->ValueAtRank(t->num_values() / 2).ok());
        EXPECT_TRUE(t->AbsValueAtRank(t->num_values() - 1).ok());
      }
    }
  }
  std::cout << accepted << " of 3000 damaged messages were still valid statistics\n";
}

}  // namespace
}  // namespace qcal::stats
