// Shadow layers, not-clipped linears and outlier channels: hand-made decisions and
// real activations (llama-tiny, llama-small) against independent computations.
#include "common/quant/shadow.h"

#include <cmath>
#include <iostream>
#include <set>

#include "common/quant/quant_test_util.h"
#include "gtest/gtest.h"

namespace qcal::quant {
namespace {

using stats::Mode;

ModelConfig Config(const std::string& model) {
  absl::StatusOr<ModelConfig> c =
      LoadModelConfig(std::string(QCAL_TEST_DATA_DIR) + "/models/" + model);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Every linear of the model clipped on both sides.
ClipResult AllClipped(const ModelConfig& config) {
  ClipResult r;
  for (const LinearModule& m : LinearModules(config)) {
    r.linears.push_back({m.name, true, true, 1.0f, 1.0f});
  }
  return r;
}

LinearClip* Find(ClipResult* r, const std::string& name) {
  for (LinearClip& c : r->linears) {
    if (c.name == name) return &c;
  }
  ADD_FAILURE() << name;
  return nullptr;
}

TEST(ShadowTest, DownProjectionNotClippedOnEitherSideMakesAShadowLayer) {
  const ModelConfig config = Config("llama-small");  // 6 layers
  ClipResult r = AllClipped(config);
  absl::StatusOr<std::vector<int64_t>> none = ShadowLayers(r, config);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(NotClippedLinears(r).empty());

  Find(&r, "model.layers.4.mlp.down_proj")->clip_output = false;
  Find(&r, "model.layers.1.mlp.down_proj")->clip_input = false;
  // Other roles and lm_head never make a shadow layer, but are not-clipped linears.
  Find(&r, "model.layers.2.mlp.up_proj")->clip_input = false;
  Find(&r, "model.layers.3.self_attn.o_proj")->clip_output = false;
  Find(&r, "lm_head")->clip_output = false;
  absl::StatusOr<std::vector<int64_t>> layers = ShadowLayers(r, config);
  ASSERT_TRUE(layers.ok());
  EXPECT_EQ(*layers, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(FormatLayerSet(*layers), "{1, 4}");
  EXPECT_EQ(NotClippedLinears(r),
            (std::vector<std::string>{"model.layers.1.mlp.down_proj",
                                      "model.layers.2.mlp.up_proj",
                                      "model.layers.3.self_attn.o_proj",
                                      "model.layers.4.mlp.down_proj", "lm_head"}));
}

TEST(ShadowTest, FormatLayerSet) {
  EXPECT_EQ(FormatLayerSet({}), "{}");
  EXPECT_EQ(FormatLayerSet({1, 2, 26}), "{1, 2, 26}");
  EXPECT_EQ(FormatLayerSet({0}), "{0}");
}

TEST(ShadowTest, UnknownLinearIsInvalidArgument) {
  const ModelConfig config = Config("llama-tiny");
  ClipResult r = AllClipped(config);
  r.linears.push_back({"model.layers.7.mlp.down_proj", false, false, 1, 1});
  absl::StatusOr<std::vector<int64_t>> layers = ShadowLayers(r, config);
  EXPECT_EQ(layers.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(layers.status().message().find("model.layers.7.mlp.down_proj"), std::string::npos);
}

TEST(ShadowTest, OutlierChannelsOfHandMadeStatistics) {
  stats::StatsSet set;
  stats::LinearStats* l = *set.GetOrCreate("x", 4, 2);
  // Channel 1 reaches -9 and channel 3 reaches 5; channels 0 and 2 stay within 2.
  const float in[2][4] = {{1, -9, 2, 0.5f}, {-2, 1, 0, 5}};
  const float out[2][2] = {{1, 1}, {1, 1}};
  ASSERT_TRUE(l->input.AddRows(&in[0][0], 2).ok());
  ASSERT_TRUE(l->output.AddRows(&out[0][0], 2).ok());
  ClipResult r;
  r.linears.push_back({"x", false, true, 2.0f, 1.0f});
  absl::StatusOr<std::vector<OutlierChannels>> o = FindOutlierChannels(set, r);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->size(), 1u);  // the output is clipped: not listed
  EXPECT_EQ((*o)[0].name, "x");
  EXPECT_EQ((*o)[0].side, Side::kInput);
  EXPECT_EQ((*o)[0].channels_total, 4);
  EXPECT_EQ((*o)[0].channels, (std::vector<int64_t>{1, 3}));
  // A negative (mllm-mode) scale bounds by its magnitude; exactly |scale| is inside.
  r.linears[0].input_scale = -5.0f;
  o = FindOutlierChannels(set, r);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ((*o)[0].channels, (std::vector<int64_t>{1}));
  r.linears[0].name = "missing";
  EXPECT_EQ(FindOutlierChannels(set, r).status().code(), absl::StatusCode::kNotFound);
}

class ShadowRealDataTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ShadowRealDataTest, MatchesIndependentComputation) {
  testing::ReferenceActivations ref;
  ASSERT_NO_FATAL_FAILURE(testing::LoadReference(GetParam(), &ref));
  const ModelConfig config = Config(GetParam());
  int64_t checked_layers = 0, checked_channels = 0, undecided = 0;
  for (Mode mode : {Mode::kAbs, Mode::kMllm}) {
    for (double t : DefaultThresholds()) {
      absl::StatusOr<ClipResult> r = DecideClips(ref.set, t, mode);
      ASSERT_TRUE(r.ok());
      absl::StatusOr<std::vector<int64_t>> layers = ShadowLayers(*r, config);
      ASSERT_TRUE(layers.ok()) << layers.status();
      const std::set<int64_t> got(layers->begin(), layers->end());
      // Independently: layer i is a shadow layer when the exact decision for its
      // down_proj is "not clipped" on either side (skipped when a side is within the
      // sketch's 0.4 % band, where the sketch may legitimately decide otherwise).
      for (int64_t i = 0; i < config.num_layers; ++i) {
        const std::string down = "model.layers." + std::to_string(i) + ".mlp.down_proj";
        for (const auto& l : ref.linears) {
          if (l.name != down) continue;
          bool shadow = false, band = false;
          for (const auto* raw : {&l.input, &l.output}) {
            const testing::ExactScales e = testing::ExactOriTop(raw->values, mode);
            const double prod = static_cast<double>(e.top_0_1) * t;
            band |= std::fabs(prod - e.ori) <= 0.004 * std::fabs(prod);
            shadow |= !(prod > e.ori);
          }
          if (band) {
            ++undecided;
            continue;
          }
          EXPECT_EQ(got.count(i) == 1, shadow) << GetParam() << " t=" << t << " layer " << i;
          ++checked_layers;
        }
      }
      // Outlier channels: per-channel absmax from the raw values against |scale|.
      absl::StatusOr<std::vector<OutlierChannels>> outliers = FindOutlierChannels(ref.set, *r);
      ASSERT_TRUE(outliers.ok());
      size_t k = 0;
      for (const LinearClip& c : r->linears) {
        const testing::RawLinear* raw = nullptr;
        for (const auto& l : ref.linears) {
          if (l.name == c.name) raw = &l;
        }
        ASSERT_NE(raw, nullptr);
        for (bool input : {true, false}) {
          if (input ? c.clip_input : c.clip_output) continue;
          ASSERT_LT(k, outliers->size());
          const OutlierChannels& o = (*outliers)[k++];
          const testing::RawTensor& rt = input ? raw->input : raw->output;
          const float scale = input ? c.input_scale : c.output_scale;
          EXPECT_EQ(o.name, c.name);
          EXPECT_EQ(o.side, input ? Side::kInput : Side::kOutput);
          EXPECT_EQ(o.scale, scale);
          std::vector<int64_t> want;
          for (int64_t ch = 0; ch < rt.channels; ++ch) {
            float absmax = 0;
            for (int64_t row = 0; row < rt.rows; ++row) {
              absmax = std::max(absmax, std::fabs(rt.values[row * rt.channels + ch]));
            }
            if (absmax > std::fabs(scale)) want.push_back(ch);
          }
          EXPECT_EQ(o.channels, want) << c.name << (input ? " input" : " output");
          ++checked_channels;
        }
      }
      EXPECT_EQ(k, outliers->size());
    }
  }
  std::cout << GetParam() << ": " << checked_layers << " layer decisions checked, "
            << undecided << " in band, " << checked_channels
            << " not-clipped tensors' outlier channels checked\n";
  EXPECT_GT(checked_layers, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, ShadowRealDataTest,
                         ::testing::Values("llama-tiny", "llama-small"));

}  // namespace
}  // namespace qcal::quant
