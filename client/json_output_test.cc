#include "client/json_output.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {
namespace {

TEST(JsonOutputTest, JobShape) {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::JOB_RUNNING);
  job.mutable_progress()->set_shards_done(3);
  job.mutable_spec()->mutable_sampling()->set_mode("packed");
  job.mutable_create_time()->set_seconds(1'700'000'000);
  auto line = MessageToJsonLine(job);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(*line);
  // .proto field names, enum names, int64 as strings (proto3 JSON), defaults present.
  EXPECT_EQ(j["id"], "job-1");
  EXPECT_EQ(j["state"], "JOB_RUNNING");
  EXPECT_EQ(j["progress"]["shards_done"], "3");
  EXPECT_EQ(j["progress"]["shards_total"], "0");
  EXPECT_EQ(j["spec"]["sampling"]["mode"], "packed");
  EXPECT_EQ(j["spec"]["sampling"]["skip_bad_lines"], false);
  EXPECT_EQ(j["error"], "");
  EXPECT_TRUE(j["failure_reasons"].is_array());
  EXPECT_EQ(j["create_time"], "2023-11-14T22:13:20Z");
  EXPECT_FALSE(j.contains("shardsDone"));
}

TEST(JsonOutputTest, OperationWithAKnownResponse) {
  v1::Operation op;
  op.set_name("operations/1");
  op.set_done(true);
  v1::Job job;
  job.set_id("job-9");
  op.mutable_response()->PackFrom(job);
  auto j = nlohmann::json::parse(OperationToJsonLine(op));
  EXPECT_EQ(j["name"], "operations/1");
  EXPECT_EQ(j["done"], true);
  EXPECT_EQ(j["response"]["@type"], "type.googleapis.com/qcal.v1.Job");
  EXPECT_EQ(j["response"]["id"], "job-9");
}

TEST(JsonOutputTest, OperationWithAnUnknownAnyFallsBack) {
  v1::Operation op;
  op.set_name("operations/2");
  op.mutable_metadata()->set_type_url("type.googleapis.com/qcal.v1.FutureMetadata");
  op.mutable_metadata()->set_value(std::string("\x08\x01", 2));
  op.mutable_error()->set_code(9);
  op.mutable_error()->set_message("not calibrated");
  const std::string line = OperationToJsonLine(op);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["name"], "operations/2");
  EXPECT_EQ(j["done"], false);
  EXPECT_EQ(j["metadata"]["@type"], "type.googleapis.com/qcal.v1.FutureMetadata");
  EXPECT_EQ(j["metadata"]["value"], "CAE=");
  EXPECT_EQ(j["error"]["code"], 9);
  EXPECT_EQ(j["error"]["message"], "not calibrated");
}

}  // namespace
}  // namespace qcal::client
