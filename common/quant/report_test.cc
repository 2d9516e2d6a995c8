// Recommendation rules and the two JSON formats (mllm's model_res_acc.json byte for
// byte as Python's json.dump writes it; qcal's evaluation JSON shape).
#include "common/quant/report.h"

#include <cmath>

#include "common/quant/quant_test_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::quant {
namespace {

using Outcomes = std::vector<ThresholdOutcome>;

TEST(RecommendTest, FewestShadowLayersWithinBudgetTiesToLargerThreshold) {
  const Outcomes o = {{1, 0.50, 60.0, 6},  {2, 0.50, 60.1, 5},  {4, 0.49, 60.3, 3},
                      {8, 0.49, 61.0, 3},  {16, 0.45, 70.0, 1}, {152, 0.30, 90.0, 0}};
  absl::StatusOr<Recommendation> r = Recommend(o, 0.50, 60.0);
  ASSERT_TRUE(r.ok()) << r.status();
  // 0.50 - 0.49 <= 0.01 holds (with slack); 4 and 8 both have 3 layers: 8 wins.
  ASSERT_TRUE(r->threshold.has_value());
  EXPECT_EQ(*r->threshold, 8);
  EXPECT_EQ(r->shadow_layers, 3);
  // A tighter budget: only 1 and 2 qualify; 2 has fewer layers.
  r = Recommend(o, 0.50, 60.0, {BudgetMetric::kAccuracy, 0.005});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->threshold, 2);
  // A loose budget takes the threshold with no shadow layer.
  r = Recommend(o, 0.50, 60.0, {BudgetMetric::kAccuracy, 0.5});
  EXPECT_EQ(*r->threshold, 152);
  // Perplexity mode: ppl / 60 - 1 <= 1 % -> 1, 2, 4 (60.3), 8 (61.0 is 1.67 %: out).
  r = Recommend(o, 0.50, 60.0, {BudgetMetric::kPerplexity, 0.01});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->threshold, 4);
  // Accuracy better than float qualifies.
  r = Recommend({{3, 0.9, 50, 2}}, 0.5, 60.0);
  EXPECT_EQ(*r->threshold, 3);
}

TEST(RecommendTest, NothingQualifiesGivesNoRecommendation) {
  absl::StatusOr<Recommendation> r =
      Recommend({{1, 0.3, 90, 2}, {2, NAN, NAN, 0}}, 0.5, 60.0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->threshold.has_value());
  EXPECT_NE(r->reason.find("no recommendation"), std::string::npos) << r->reason;
  r = Recommend({}, 0.5, 60.0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->threshold.has_value());
}

TEST(RecommendTest, BadInputs) {
  EXPECT_FALSE(Recommend({}, 0.5, 60, {BudgetMetric::kAccuracy, -0.1}).ok());
  EXPECT_FALSE(Recommend({}, 0.5, 60, {BudgetMetric::kAccuracy, NAN}).ok());
  EXPECT_FALSE(Recommend({}, NAN, 60, {BudgetMetric::kAccuracy, 0.01}).ok());
  EXPECT_FALSE(Recommend({}, 0.5, 0, {BudgetMetric::kPerplexity, 0.01}).ok());
}

TEST(ReportTest, ThresholdKeysAsPythonWritesThem) {
  EXPECT_EQ(ThresholdKey(1), "1");
  EXPECT_EQ(ThresholdKey(152), "152");
  EXPECT_EQ(ThresholdKey(10000000), "10000000");
  EXPECT_EQ(ThresholdKey(1.5), "1.5");
  EXPECT_EQ(ThresholdKey(0.1), "0.1");
}

EvaluationReport HandMade() {
  EvaluationReport rep;
  rep.model = "org/model-1";
  for (double t : {1.0, 8.0}) {
    ThresholdReport tr;
    tr.clips.threshold = t;
    tr.clips.linears = {{"model.layers.0.mlp.down_proj", t > 1, t > 1, 2.5f, 0.5f},
                        {"lm_head", t > 1, false, 1.0f, 0.25f}};
    tr.clips.clip_input_num = t > 1 ? 2 : 0;
    tr.clips.no_clip_input_num = t > 1 ? 0 : 2;
    tr.clips.clip_output_num = t > 1 ? 1 : 0;
    tr.clips.no_clip_output_num = t > 1 ? 1 : 2;
    if (t == 1) tr.clips.no_clip_input_name = {"model.layers.0.mlp.down_proj", "lm_head"};
    tr.clips.no_clip_output_name = {"lm_head"};
    if (t == 1) tr.clips.no_clip_output_name.insert(tr.clips.no_clip_output_name.begin(),
                                                    "model.layers.0.mlp.down_proj");
    tr.shadow_layers = t == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{};
    EvalMetrics m;
    m.hits = t == 1 ? 3 : 1;
    m.total = 4;
    m.nll_sum = 10;
    m.predictions = 5;
    tr.metrics = m;
    rep.thresholds.push_back(tr);
  }
  EvalMetrics f;
  f.hits = 3;
  f.total = 4;
  f.nll_sum = 9;
  f.predictions = 5;
  rep.float_metrics = f;
  return rep;
}

TEST(ReportTest, ModelResAccJsonIsWhatPythonWrites) {
  // json.dump({...}, f, indent=4, ensure_ascii=False) of mllm's res_data.
  const std::string want = R"({
    "org/model-1": {
        "1": {
            "t01m_thre": 1,
            "clip_input_num": 0,
            "no_clip_input_num": 2,
            "clip_output_num": 0,
            "no_clip_output_num": 2,
            "no_clip_input_name": [
                "model.layers.0.mlp.down_proj",
                "lm_head"
            ],
            "no_clip_output_name": [
                "model.layers.0.mlp.down_proj",
                "lm_head"
            ],
            "res": 0.75
        },
        "8": {
            "t01m_thre": 8,
            "clip_input_num": 2,
            "no_clip_input_num": 0,
            "clip_output_num": 1,
            "no_clip_output_num": 1,
            "no_clip_input_name": [],
            "no_clip_output_name": [
                "lm_head"
            ],
            "res": 0.25
        }
    }
})";
  absl::StatusOr<std::string> got = ModelResAccJson(HandMade());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
  EvaluationReport missing = HandMade();
  missing.thresholds[1].metrics.reset();
  EXPECT_EQ(ModelResAccJson(missing).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ReportTest, RecommendThresholdNeedsEveryMetric) {
  EvaluationReport rep = HandMade();
  rep.thresholds[0].metrics.reset();
  EXPECT_EQ(RecommendThreshold({}, &rep).code(), absl::StatusCode::kFailedPrecondition);
  rep = HandMade();
  rep.float_metrics.reset();
  EXPECT_EQ(RecommendThreshold({}, &rep).code(), absl::StatusCode::kFailedPrecondition);
  rep = HandMade();
  ASSERT_TRUE(RecommendThreshold({BudgetMetric::kAccuracy, 0.01}, &rep).ok());
  ASSERT_TRUE(rep.recommendation->threshold.has_value());
  EXPECT_EQ(*rep.recommendation->threshold, 1);  // 8 loses 0.5 accuracy
}

TEST(ReportTest, AnalyzeRealStatisticsAndWriteEvaluationJson) {
  testing::ReferenceActivations ref;
  ASSERT_NO_FATAL_FAILURE(testing::LoadReference("llama-tiny", &ref));
  absl::StatusOr<ModelConfig> config =
      LoadModelConfig(std::string(QCAL_TEST_DATA_DIR) + "/models/llama-tiny");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(AnalyzeThresholds(ref.set, *config, "m", stats::Mode::kAbs, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AnalyzeThresholds(ref.set, *config, "m", stats::Mode::kAbs, {2, 2.0}).status().code(),
      absl::StatusCode::kInvalidArgument);
  absl::StatusOr<EvaluationReport> rep =
      AnalyzeThresholds(ref.set, *config, "llama-tiny", stats::Mode::kAbs, DefaultThresholds());
  ASSERT_TRUE(rep.ok()) << rep.status();
  ASSERT_EQ(rep->thresholds.size(), DefaultThresholds().size());
  EXPECT_EQ(rep->thresholds.front().shadow_layers, (std::vector<int64_t>{0, 1}));  // t = 1
  // Not evaluated yet: mllm's file cannot be written, qcal's has nulls.
  EXPECT_FALSE(ModelResAccJson(*rep).ok());
  nlohmann::json j = nlohmann::json::parse(EvaluationJson(*rep));
  EXPECT_EQ(j["model"], "llama-tiny");
  EXPECT_EQ(j["mode"], "abs");
  EXPECT_TRUE(j["float"].is_null());
  EXPECT_TRUE(j["recommendation"].is_null());
  ASSERT_EQ(j["thresholds"].size(), DefaultThresholds().size());
  // Fill in metrics (fake: fewer hits as t grows) and recommend.
  EvalMetrics f{10, 10, 20.0, 40};
  rep->float_metrics = f;
  for (size_t i = 0; i < rep->thresholds.size(); ++i) {
    rep->thresholds[i].metrics = EvalMetrics{10 - static_cast<int64_t>(i), 10, 20.0 + i, 40};
  }
  ASSERT_TRUE(RecommendThreshold({BudgetMetric::kAccuracy, 0.1}, &*rep).ok());
  j = nlohmann::json::parse(EvaluationJson(*rep));
  for (size_t i = 0; i < rep->thresholds.size(); ++i) {
    const nlohmann::json& t = j["thresholds"][i];
    const ThresholdReport& tr = rep->thresholds[i];
    EXPECT_EQ(t["threshold"].get<double>(), DefaultThresholds()[i]);
    EXPECT_TRUE(t["t01m_thre"].is_number_integer());
    EXPECT_EQ(t["clip_input_num"], tr.clips.clip_input_num);
    EXPECT_EQ(t["no_clip_output_name"].get<std::vector<std::string>>(),
              tr.clips.no_clip_output_name);
    EXPECT_EQ(t["shadow_layers"].get<std::vector<int64_t>>(), tr.shadow_layers);
    EXPECT_EQ(t["shadow_layers_cpp"], FormatLayerSet(tr.shadow_layers));
    EXPECT_EQ(t["num_shadow_layers"], tr.shadow_layers.size());
    EXPECT_EQ(t["not_clipped_linears"].get<std::vector<std::string>>(),
              tr.not_clipped_linears);
    EXPECT_DOUBLE_EQ(t["res"].get<double>(), (10.0 - i) / 10);
    EXPECT_DOUBLE_EQ(t["perplexity"].get<double>(), std::exp((20.0 + i) / 40));
    EXPECT_EQ(t["metrics"]["hits"], 10 - static_cast<int64_t>(i));
    ASSERT_EQ(t["linears"].size(), tr.clips.linears.size());
    EXPECT_EQ(t["linears"][0]["name"], tr.clips.linears[0].name);
    EXPECT_TRUE(t["linears"][0]["proxy"]["input"].contains("sqnr_db"));
    EXPECT_EQ(t["outlier_channels"].size(), tr.outliers.size());
    EXPECT_TRUE(t["proxy"].contains("mean_sqnr_db"));
  }
  EXPECT_EQ(j["recommendation"]["metric"], "accuracy");
  ASSERT_FALSE(j["recommendation"]["threshold"].is_null());
  EXPECT_EQ(j["recommendation"]["threshold"].get<double>(), *rep->recommendation->threshold);
  EXPECT_TRUE(j["recommendation"]["shadow_layers_cpp"].is_string());
  absl::StatusOr<std::string> mllm = ModelResAccJson(*rep);
  ASSERT_TRUE(mllm.ok());
  nlohmann::ordered_json m = nlohmann::ordered_json::parse(*mllm);
  std::vector<std::string> keys;
  for (auto it = m["llama-tiny"].begin(); it != m["llama-tiny"].end(); ++it) {
    keys.push_back(it.key());
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"1", "2", "4", "8", "16", "24", "32", "64", "128",
                                            "152", "10000000"}));
  std::vector<std::string> fields;
  for (auto it = m["llama-tiny"]["8"].begin(); it != m["llama-tiny"]["8"].end(); ++it) {
    fields.push_back(it.key());
  }
  EXPECT_EQ(fields, (std::vector<std::string>{"t01m_thre", "clip_input_num", "no_clip_input_num",
                                              "clip_output_num", "no_clip_output_num",
                                              "no_clip_input_name", "no_clip_output_name",
                                              "res"}));
}

}  // namespace
}  // namespace qcal::quant
