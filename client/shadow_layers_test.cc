#include "client/shadow_layers.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/test_util/fake_calibration_server.h"
#include "common/model_config.h"
#include "common/quant/clip.h"
#include "common/quant/shadow.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

constexpr char kDown[] = "model.layers.{i}.mlp.down_proj";

TEST(LayerFromPatternTest, ReadsExactlyTheIndexThePatternGives) {
  EXPECT_EQ(LayerFromPattern("model.layers.0.mlp.down_proj", kDown), 0);
  EXPECT_EQ(LayerFromPattern("model.layers.7.mlp.down_proj", kDown), 7);
  EXPECT_EQ(LayerFromPattern("model.layers.26.mlp.down_proj", kDown), 26);
  EXPECT_EQ(LayerFromPattern("model.layers.1234.mlp.down_proj", kDown), 1234);
  for (const char* name : {
           "model.layers.1.mlp.up_proj",           // another role
           "model.layers.1.self_attn.o_proj",      //
           "lm_head",                              //
           "model.layers..mlp.down_proj",          // no index
           "model.layers.x.mlp.down_proj",         // not a number
           "model.layers.-1.mlp.down_proj",        // a sign
           "model.layers.+1.mlp.down_proj",        //
           "model.layers.01.mlp.down_proj",        // not the name of layer 1
           "model.layers. 1.mlp.down_proj",        //
           "model.layers.1.mlp.down_proj.lora_A",  // a submodule
           "prefix.model.layers.1.mlp.down_proj",  //
           "model.layers.1.2.mlp.down_proj",       //
           "model.layers.99999999999999999999.mlp.down_proj",  // overflows int64
           "model.layers.mlp.down_proj",           //
       }) {
    EXPECT_FALSE(LayerFromPattern(name, kDown).has_value()) << name;
  }
  EXPECT_FALSE(LayerFromPattern("lm_head", "lm_head").has_value());  // no {i}
}

// The mapping agrees with LinearModules for every architecture of the table: each
// down projection gives its layer, every other linear none.
TEST(DownProjectionLayerTest, AgreesWithTheArchitectureTable) {
  for (const ArchSpec& spec : ArchTable()) {
    ModelConfig config;
    config.arch = spec.arch;
    config.model_type = spec.model_type;
    config.vocab_size = 32;
    config.hidden_size = 8;
    config.intermediate_size = 16;
    config.num_layers = 30;
    config.num_heads = 2;
    config.num_kv_heads = 1;
    config.head_dim = 4;
    int downs = 0;
    for (const LinearModule& m : LinearModules(config)) {
      const std::optional<int64_t> layer = DownProjectionLayer(m.name, spec.model_type);
      if (m.role == TensorRole::kDown) {
        ++downs;
        ASSERT_TRUE(layer.has_value()) << spec.model_type << " " << m.name;
        EXPECT_EQ(*layer, m.layer) << m.name;
      } else {
        EXPECT_FALSE(layer.has_value()) << spec.model_type << " " << m.name;
      }
      // Unknown or missing architecture: every table pattern is tried.
      EXPECT_EQ(DownProjectionLayer(m.name, ""), layer) << m.name;
      EXPECT_EQ(DownProjectionLayer(m.name, "gpt9"), layer) << m.name;
    }
    EXPECT_EQ(downs, 30) << spec.model_type;
  }
}

// The same set as quant::ShadowLayers(clips, config), without the config.
TEST(ShadowLayersByNameTest, MatchesQuantShadowLayers) {
  const stats::StatsSet set = testing::MakeOutlierStatsSet();
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = 32;
  config.hidden_size = 8;
  config.intermediate_size = 16;
  config.num_layers = 4;
  config.num_heads = 2;
  config.num_kv_heads = 2;
  config.head_dim = 4;
  for (double t : {1.0, 3.0, 10.0, 30.0, 60.0, 200.0}) {
    auto clips = quant::DecideClips(set, t, stats::Mode::kAbs);
    ASSERT_TRUE(clips.ok()) << clips.status();
    auto want = quant::ShadowLayers(*clips, config);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(ShadowLayersByName(*clips, "llama"), *want) << t;
  }
  auto clips = quant::DecideClips(set, 10, stats::Mode::kAbs);
  ASSERT_TRUE(clips.ok());
  EXPECT_EQ(ShadowLayersByName(*clips, "llama"), (std::vector<int64_t>{0, 1, 3}));
}

class SelectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/shadow_layers_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_ + "/model");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteConfig(int layers) {
    std::ofstream(dir_ + "/model/config.json")
        << R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
               "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
               "num_hidden_layers": )"
        << layers << R"(, "num_attention_heads": 2, "num_key_value_heads": 2,
               "max_position_embeddings": 64})";
  }

  std::string dir_;
};

TEST_F(SelectionTest, FromStatisticsByModuleNameWhenTheConfigIsUnreadable) {
  const stats::StatsSet set = testing::MakeOutlierStatsSet();
  auto s = SelectionFromStatistics("job-1", set, 10, stats::Mode::kAbs,
                                   dir_ + "/absent", "llama");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->layers, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(s->layer_index_from, "module names");
  EXPECT_EQ(s->note, "cannot read " + dir_ + "/absent/config.json");
  EXPECT_EQ(s->source, "statistics");
  EXPECT_EQ(FormatShadowSelection(*s),
            "{0, 1, 3}\n"
            "threshold 10, mode abs: 3 shadow layers (computed here from the statistics "
            "of job-1; layer indices from module names: cannot read " +
                dir_ +
                "/absent/config.json)\n"
                "not clipped input (3):\n"
                "  model.layers.1.mlp.down_proj\n"
                "  model.layers.2.self_attn.q_proj\n"
                "  model.layers.3.mlp.down_proj\n"
                "not clipped output (1):\n"
                "  model.layers.0.mlp.down_proj\n");

  auto low = SelectionFromStatistics("job-1", set, 3, stats::Mode::kMllm, "", "");
  ASSERT_TRUE(low.ok());
  EXPECT_EQ(low->layers, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(low->mode, "mllm");
  EXPECT_EQ(low->note, "the job names no model folder");
  auto high = SelectionFromStatistics("job-1", set, 200, stats::Mode::kAbs, "", "llama");
  ASSERT_TRUE(high.ok());
  EXPECT_TRUE(high->layers.empty());
  EXPECT_EQ(FormatShadowSelection(*high).substr(0, 3), "{}\n");

  EXPECT_EQ(SelectionFromStatistics("job-1", set, 0, stats::Mode::kAbs, "", "llama")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SelectionTest, FromStatisticsThroughTheConfig) {
  WriteConfig(4);
  const stats::StatsSet set = testing::MakeOutlierStatsSet();
  auto s = SelectionFromStatistics("job-1", set, 10, stats::Mode::kAbs, dir_ + "/model",
                                   "llama");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->layers, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(s->layer_index_from, "config");
  EXPECT_NE(FormatShadowSelection(*s).find(
                "(computed here from the statistics of job-1; layer indices from the "
                "model's config.json)\n"),
            std::string::npos);
  // A config of another model (2 layers) does not know layers 2 and 3.
  WriteConfig(2);
  auto other = SelectionFromStatistics("job-1", set, 10, stats::Mode::kAbs,
                                       dir_ + "/model", "llama");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SelectionJsonTest, Shape) {
  const v1::EvaluateResponse response = testing::MakeEvaluateResponse("job-1");
  const ShadowSelection s = SelectionFromEvaluation("job-1", "operations/eval-1", response,
                                                    response.thresholds(1),
                                                    /*recommended=*/true);
  const std::string line = ShadowSelectionJson(s);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line,
            R"({"job_id":"job-1","threshold":8,"mode":"abs","recommended":true,)"
            R"("shadow_layers":[1,2,26],"shadow_layers_set":"{1, 2, 26}",)"
            R"("no_clip_input_name":["model.layers.1.mlp.down_proj",)"
            R"("model.layers.26.mlp.down_proj"],)"
            R"("no_clip_output_name":["model.layers.2.mlp.down_proj"],)"
            R"("source":"evaluation operations/eval-1","layer_index_from":"evaluation"})");
  ShadowSelection half = s;
  half.threshold = 1.5;
  EXPECT_EQ(nlohmann::json::parse(ShadowSelectionJson(half))["threshold"], 1.5);
  EXPECT_EQ(FormatShadowSelection(half),
            "{1, 2, 26}\n"
            "threshold 1.5 (recommended), mode abs: 3 shadow layers (from evaluation "
            "operations/eval-1)\n"
            "not clipped input (2):\n"
            "  model.layers.1.mlp.down_proj\n"
            "  model.layers.26.mlp.down_proj\n"
            "not clipped output (1):\n"
            "  model.layers.2.mlp.down_proj\n");
}

TEST(ParseEvalModeTest, AbsAndMllmOnly) {
  EXPECT_EQ(*ParseEvalMode("abs", "--mode"), stats::Mode::kAbs);
  EXPECT_EQ(*ParseEvalMode("mllm", "--mode"), stats::Mode::kMllm);
  EXPECT_EQ(ParseEvalMode("ABS", "--mode").status().message(),
            "--mode must be abs or mllm (got \"ABS\")");
}

}  // namespace
}  // namespace qcal::client
