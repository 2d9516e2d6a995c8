// Clip decisions from statistics of real activations (Hugging Face's reference
// activations of llama-tiny and the trained llama-small) against decisions computed
// independently from the raw values, for every default threshold in both modes.
#include "common/quant/clip.h"

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "common/quant/quant_test_util.h"
#include "gtest/gtest.h"

namespace qcal::quant {
namespace {

using stats::Mode;
using testing::ExactOriTop;
using testing::ExactScales;
using testing::LoadReference;
using testing::ReferenceActivations;

// The sketch's top_0_1 is within 0.39 % (+ float rounding) of the exact value, so a
// decision can only differ when top_0_1 * t is within this band of ori.
constexpr double kBand = 0.0040;

class ClipRealDataTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ClipRealDataTest, EveryDecisionMatchesAnExactSort) {
  ReferenceActivations ref;
  ASSERT_NO_FATAL_FAILURE(LoadReference(GetParam(), &ref));
  int64_t decisions = 0, in_band = 0, in_band_differ = 0;
  for (Mode mode : {Mode::kAbs, Mode::kMllm}) {
    // Exact scales from the raw values, in the reference's module order.
    std::vector<LinearScales> exact;
    for (const auto& l : ref.linears) {
      const ExactScales in = ExactOriTop(l.input.values, mode);
      const ExactScales out = ExactOriTop(l.output.values, mode);
      exact.push_back({l.name, {in.ori, in.top_0_1}, {out.ori, out.top_0_1}});
    }
    const std::vector<LinearScales> sketch = ComputeScales(ref.set, mode);
    ASSERT_EQ(sketch.size(), exact.size());
    for (size_t i = 0; i < exact.size(); ++i) {
      ASSERT_EQ(sketch[i].name, exact[i].name);
      EXPECT_EQ(sketch[i].input.ori, exact[i].input.ori) << exact[i].name;  // ori is exact
      EXPECT_EQ(sketch[i].output.ori, exact[i].output.ori) << exact[i].name;
    }
    for (double t : DefaultThresholds()) {
      absl::StatusOr<ClipResult> got = DecideClips(ref.set, t, mode);
      ASSERT_TRUE(got.ok()) << got.status();
      absl::StatusOr<ClipResult> from_exact = DecideClips(exact, t);
      ASSERT_TRUE(from_exact.ok());
      ASSERT_EQ(got->linears.size(), exact.size());
      EXPECT_EQ(got->threshold, t);
      int64_t want_clip_in = 0, want_clip_out = 0;
      std::vector<std::string> want_no_in, want_no_out;
      for (size_t i = 0; i < exact.size(); ++i) {
        const LinearScales& e = exact[i];
        const LinearClip& g = got->linears[i];
        const LinearClip& x = from_exact->linears[i];
        ASSERT_EQ(g.name, e.name);
        for (bool input : {true, false}) {
          const TensorScales& s = input ? e.input : e.output;
          // Independent decision, as Python evaluates it.
          const bool want = static_cast<double>(s.top_0_1) * t > static_cast<double>(s.ori);
          const float want_scale = want ? s.ori : s.top_0_1;
          const bool got_clip = input ? g.clip_input : g.clip_output;
          const float got_scale = input ? g.input_scale : g.output_scale;
          // Exact ori / top through DecideClips: identical decisions and scales.
          EXPECT_EQ(input ? x.clip_input : x.clip_output, want) << e.name;
          EXPECT_EQ(input ? x.input_scale : x.output_scale, want_scale) << e.name;
          const std::string where = std::string(stats::ModeName(mode)) + " t=" +
                                    std::to_string(t) + " " + e.name +
                                    (input ? " input" : " output");
          const double prod = static_cast<double>(s.top_0_1) * t;
          const bool band = std::fabs(prod - s.ori) <= kBand * std::fabs(prod);
          ++decisions;
          in_band += band;
          if (band) {
            if (got_clip != want) {
              ++in_band_differ;
              std::cout << "in band (sketch decision differs, allowed): " << where
                        << " top*t=" << prod << " ori=" << s.ori << "\n";
            }
          } else {
            EXPECT_EQ(got_clip, want) << where << " top*t=" << prod << " ori=" << s.ori;
            if (got_clip) {
              EXPECT_EQ(got_scale, s.ori) << where;  // exact
            } else {
              EXPECT_LE(std::fabs(got_scale - s.top_0_1), 0.004 * std::fabs(s.top_0_1))
                  << where;
            }
          }
          if (want) {
            (input ? want_clip_in : want_clip_out)++;
          } else {
            (input ? want_no_in : want_no_out).push_back(e.name);
          }
        }
      }
      // mllm's counts and name lists (from the exact decisions).
      EXPECT_EQ(from_exact->clip_input_num, want_clip_in);
      EXPECT_EQ(from_exact->clip_output_num, want_clip_out);
      EXPECT_EQ(from_exact->no_clip_input_num, static_cast<int64_t>(want_no_in.size()));
      EXPECT_EQ(from_exact->no_clip_output_num, static_cast<int64_t>(want_no_out.size()));
      EXPECT_EQ(from_exact->no_clip_input_name, want_no_in);
      EXPECT_EQ(from_exact->no_clip_output_name, want_no_out);
      // The sketch result's counts agree with its own decisions.
      int64_t ci = 0, co = 0;
      for (const LinearClip& c : got->linears) {
        ci += c.clip_input;
        co += c.clip_output;
      }
      EXPECT_EQ(got->clip_input_num, ci);
      EXPECT_EQ(got->clip_output_num, co);
      EXPECT_EQ(got->clip_input_num + got->no_clip_input_num,
                static_cast<int64_t>(exact.size()));
      EXPECT_EQ(got->no_clip_input_name.size(), static_cast<size_t>(got->no_clip_input_num));
    }
  }
  std::cout << GetParam() << ": " << decisions << " decisions, " << in_band
            << " in the 0.4 % band, " << in_band_differ
            << " of those differ from the exact sort\n";
  ::testing::Test::RecordProperty("decisions", std::to_string(decisions));
  ::testing::Test::RecordProperty("in_band", std::to_string(in_band));
  ::testing::Test::RecordProperty("in_band_differ", std::to_string(in_band_differ));
}

INSTANTIATE_TEST_SUITE_P(Models, ClipRealDataTest,
                         ::testing::Values("llama-tiny", "llama-small"));

TEST(ClipTest, ThresholdOneClipsNothingAndHugeClipsEverythingPositive) {
  std::vector<LinearScales> s = {{"a", {2.0f, 1.0f}, {5.0f, 0.5f}},
                                 {"b", {3.0f, 3.0f}, {1.0f, 0.0f}}};
  absl::StatusOr<ClipResult> one = DecideClips(s, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->clip_input_num, 0);  // top * 1 > ori never holds (top <= ori)
  EXPECT_EQ(one->no_clip_input_name, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(one->linears[0].input_scale, 1.0f);
  absl::StatusOr<ClipResult> big = DecideClips(s, 10000000);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->clip_input_num, 2);
  EXPECT_EQ(big->clip_output_num, 1);  // top 0: 0 * t > 1 is false
  EXPECT_EQ(big->no_clip_output_name, (std::vector<std::string>{"b"}));
  EXPECT_EQ(big->linears[0].input_scale, 2.0f);
  EXPECT_EQ(big->linears[0].output_scale, 5.0f);
}

TEST(ClipTest, ComparisonIsStrictAndInDouble) {
  // 0.1f * 10 in double is 1.0000000149..., above 1.0f: clipped (float math would
  // round the product to exactly 1.0f and not clip).
  EXPECT_TRUE(IsClipped({1.0f, 0.1f}, 10));
  // Equality is not clipped.
  EXPECT_FALSE(IsClipped({4.0f, 2.0f}, 2));
  EXPECT_TRUE(IsClipped({4.0f, 2.0f}, 2.0000001));
}

TEST(ClipTest, BadThresholdsAreRejected) {
  for (double t : {0.0, -1.0, std::nan(""), static_cast<double>(INFINITY)}) {
    EXPECT_EQ(DecideClips(std::vector<LinearScales>{}, t).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ClipTest, EmptyLinearsAreLeftOut) {
  stats::StatsSet set;
  ASSERT_TRUE(set.GetOrCreate("empty", 4, 4).ok());
  stats::LinearStats* l = *set.GetOrCreate("full", 2, 2);
  const float row[2] = {1.0f, -3.0f};
  ASSERT_TRUE(l->input.AddRows(row, 1).ok());
  ASSERT_TRUE(l->output.AddRows(row, 1).ok());
  absl::StatusOr<ClipResult> r = DecideClips(set, 2, Mode::kAbs);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->linears.size(), 1u);
  EXPECT_EQ(r->linears[0].name, "full");
  // abs: N = 2, rank int(2 * 0.999) - 1 = 0 -> top = 1, ori = 3; 1 * 2 > 3 is false.
  EXPECT_FALSE(r->linears[0].clip_input);
  EXPECT_NEAR(r->linears[0].input_scale, 1.0f, 0.004f);  // a bucket representative
  // mllm: signed, top = -3 (rank 0), ori = 1.
  absl::StatusOr<ClipResult> m = DecideClips(set, 2, Mode::kMllm);
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->linears[0].clip_input);
  EXPECT_EQ(m->linears[0].input_scale, -3.0f);
}

}  // namespace
}  // namespace qcal::quant
