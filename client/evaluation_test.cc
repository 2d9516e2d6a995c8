// Evaluation views (evaluation.h) and the operation display (operation_wait.h).
#include "client/evaluation.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "client/operation_wait.h"
#include "client/test_util/fake_calibration_server.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

using testing::EvaluationVersions;
using testing::MakeEvaluateResponse;

TEST(EvaluationTableTest, FloatFirstRecommendedMarked) {
  EXPECT_EQ(
      FormatEvaluationTable(MakeEvaluateResponse("job-1")),
      "evaluation of job-1 (mode abs, 128 samples)\n"
      "   THRESHOLD  RES     PPL     CLIP_IN  NO_CLIP_IN  CLIP_OUT  NO_CLIP_OUT  SHADOW  "
      "SHADOW_LAYERS\n"
      "   float      0.6328  12.250  -        -           -         -            -       -\n"
      "   1          0.5000  20.500  0        5           0         5            4       "
      "{0, 1, 2, 26}\n"
      "*  8          0.6250  12.500  3        2           4         1            3       "
      "{1, 2, 26}\n"
      "   32         0.6016  13.000  4        1           5         0            1       "
      "{26}\n"
      "   10000000   0.2500  80.000  5        0           5         0            0       "
      "{}\n"
      "recommended threshold: 8 (3 shadow layers: {1, 2, 26}); threshold 8 has the fewest "
      "shadow layers (3) within 0.01 of the float res\n");
}

TEST(EvaluationTableTest, NoRecommendationAndMissingMetrics) {
  v1::EvaluateResponse response = MakeEvaluateResponse("job-1");
  response.clear_recommended_threshold();
  response.set_recommendation_note("no threshold keeps res within 0.01 of the float res");
  response.mutable_thresholds(0)->set_res(std::numeric_limits<double>::quiet_NaN());
  const std::string table = FormatEvaluationTable(response);
  EXPECT_EQ(table.find('*'), std::string::npos) << table;
  EXPECT_NE(table.find("\n  1          -       20.500"), std::string::npos) << table;
  EXPECT_NE(table.find("\nno recommended threshold: no threshold keeps res within 0.01 of "
                       "the float res\n"),
            std::string::npos)
      << table;
}

TEST(EvaluationLookupTest, FindsThresholdsExactly) {
  const v1::EvaluateResponse response = MakeEvaluateResponse("job-1");
  ASSERT_NE(FindThresholdResult(response, 32), nullptr);
  EXPECT_EQ(FindThresholdResult(response, 32)->shadow_layers_size(), 1);
  EXPECT_EQ(FindThresholdResult(response, 31.999), nullptr);
  ASSERT_NE(RecommendedResult(response), nullptr);
  EXPECT_EQ(RecommendedResult(response)->threshold(), 8);
  EXPECT_EQ(FormatThreshold(10000000), "10000000");
  EXPECT_EQ(FormatThreshold(1.5), "1.5");
}

TEST(ModelResAccTest, MllmLayout) {
  v1::EvaluateResponse response;
  response.set_job_id("job-1");
  response.set_samples(128);
  v1::ThresholdResult* a = response.add_thresholds();
  a->set_threshold(1.5);
  a->set_clip_input_num(1);
  a->set_no_clip_input_num(1);
  a->set_clip_output_num(2);
  a->set_no_clip_output_num(0);
  a->add_no_clip_input_name("model.layers.0.mlp.down_proj");
  a->set_res(0.1);  // not k / 128: kept exactly all the same
  v1::ThresholdResult* b = response.add_thresholds();
  b->set_threshold(8);
  b->set_clip_input_num(2);
  b->set_clip_output_num(2);
  b->set_res(81.0 / 128);
  auto json = ModelResAccJsonOf(response, "/models/llama-small");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json, R"({
    "/models/llama-small": {
        "1.5": {
            "t01m_thre": 1.5,
            "clip_input_num": 1,
            "no_clip_input_num": 1,
            "clip_output_num": 2,
            "no_clip_output_num": 0,
            "no_clip_input_name": [
                "model.layers.0.mlp.down_proj"
            ],
            "no_clip_output_name": [],
            "res": 0.1
        },
        "8": {
            "t01m_thre": 8,
            "clip_input_num": 2,
            "no_clip_input_num": 0,
            "clip_output_num": 2,
            "no_clip_output_num": 0,
            "no_clip_input_name": [],
            "no_clip_output_name": [],
            "res": 0.6328125
        }
    }
})");
}

TEST(EvaluateResponseJsonTest, IndentedProtobufMapping) {
  auto json = EvaluateResponseJson(MakeEvaluateResponse("job-1"));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->rfind("{\n  \"job_id\": \"job-1\",\n  \"mode\": \"abs\",\n", 0), 0u)
      << *json;
  auto j = nlohmann::json::parse(*json);
  EXPECT_EQ(j["samples"], "128");  // int64 as a string, as protobuf maps it
  EXPECT_EQ(j["recommended_threshold"], 8);
  EXPECT_EQ(j["thresholds"][1]["shadow_layers"], nlohmann::json::array({1, 2, 26}));
  EXPECT_EQ(j["thresholds"][0]["linears"][0]["clip_input"], false);
}

TEST(EvaluateResponseOfTest, OnlyADoneSuccessfulEvaluation) {
  const std::vector<v1::Operation> ok = EvaluationVersions(
      "operations/e1", "job-1", MakeEvaluateResponse("job-1"));
  EXPECT_EQ(EvaluateResponseOf(ok[0]).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto response = EvaluateResponseOf(ok[2]);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->recommended_threshold(), 8);
  const std::vector<v1::Operation> failed = EvaluationVersions(
      "operations/e2", "job-1", MakeEvaluateResponse("job-1"), "worker crashed");
  EXPECT_EQ(EvaluateResponseOf(failed[2]).status().message(),
            "operation operations/e2 ended with an error: worker crashed");
  v1::Operation other = ok[2];
  other.mutable_response()->PackFrom(v1::EvaluateMetadata());
  EXPECT_EQ(EvaluateResponseOf(other).status().code(), absl::StatusCode::kInternal);
}

TEST(OperationLinesTest, UnitsFromEvaluateMetadata) {
  const std::vector<v1::Operation> ok = EvaluationVersions(
      "operations/e1", "job-1", MakeEvaluateResponse("job-1"));
  const absl::Duration t = absl::Seconds(83);
  EXPECT_EQ(FormatOperationProgressLine(ok[1], t),
            "operations/e1 RUNNING [#########...............] 4/10 units  1m23s");
  EXPECT_EQ(FormatOperationPlainLine(ok[1], t),
            "operations/e1 RUNNING units 4/10 elapsed 1m23s");
  EXPECT_EQ(FormatOperationFinalLine(ok[2], t), "operations/e1 DONE: 10/10 units in 1m23s");
  const std::vector<v1::Operation> failed = EvaluationVersions(
      "operations/e2", "job-1", MakeEvaluateResponse("job-1"), "worker\ncrashed");
  EXPECT_EQ(OperationStateName(failed[2]), "FAILED");
  EXPECT_EQ(FormatOperationFinalLine(failed[2], t),
            "operations/e2 FAILED after 1m23s: INTERNAL: worker crashed");
  v1::Operation cancelled = failed[2];
  cancelled.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(OperationStateName(cancelled), "CANCELLED");
  // Another kind of operation: no units.
  v1::Operation plain;
  plain.set_name("operations/x");
  EXPECT_EQ(FormatOperationPlainLine(plain, t), "operations/x RUNNING elapsed 1m23s");
  EXPECT_EQ(FormatOperationProgressLine(plain, t), "operations/x RUNNING 1m23s");
  plain.set_done(true);
  EXPECT_EQ(FormatOperationFinalLine(plain, t), "operations/x DONE: in 1m23s");
}

TEST(OperationDisplayTest, PlainPrintsChangesOnlyThenTheFinalLine) {
  const std::vector<v1::Operation> ok = EvaluationVersions(
      "operations/e1", "job-1", MakeEvaluateResponse("job-1"));
  std::ostringstream out;
  OperationDisplay display(&out, DisplayMode::kPlain);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  display.Update(ok[0], t0);
  display.Update(ok[0], t0 + absl::Seconds(1));
  display.Update(ok[1], t0 + absl::Seconds(2));
  display.Update(ok[2], t0 + absl::Seconds(5));
  display.Finish(t0 + absl::Seconds(5));
  display.Finish(t0 + absl::Seconds(6));
  EXPECT_EQ(out.str(),
            "operations/e1 RUNNING units 0/10 elapsed 0s\n"
            "operations/e1 RUNNING units 4/10 elapsed 2s\n"
            "operations/e1 DONE units 10/10 elapsed 5s\n"
            "operations/e1 DONE: 10/10 units in 5s\n");
}

TEST(OperationDisplayTest, TerminalRedrawsOneLine) {
  const std::vector<v1::Operation> ok = EvaluationVersions(
      "operations/e1", "job-1", MakeEvaluateResponse("job-1"));
  std::ostringstream out;
  OperationDisplay display(&out, DisplayMode::kTerminal);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  display.Update(ok[1], t0);
  display.Update(ok[2], t0 + absl::Seconds(3));
  display.Finish(t0 + absl::Seconds(3));
  EXPECT_EQ(out.str(),
            "\roperations/e1 RUNNING [#########...............] 4/10 units  0s"
            "\roperations/e1 DONE [########################] 10/10 units  3s  "
            "\roperations/e1 DONE [########################] 10/10 units  3s\n"
            "operations/e1 DONE: 10/10 units in 3s\n");
  std::ostringstream json_out;
  OperationDisplay json(&json_out, DisplayMode::kJson);
  json.Update(ok[2], t0);
  json.Finish(t0);
  EXPECT_EQ(json_out.str(), "");
}

}  // namespace
}  // namespace qcal::client
