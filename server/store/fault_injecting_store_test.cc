#include "server/store/fault_injecting_store.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "server/store/in_memory_store.h"

namespace qcal::server {
namespace {

WriteBatch PutBatch(Family f, const std::string& key, const std::string& value) {
  WriteBatch b;
  b.Put(f, key, value);
  return b;
}

std::optional<std::string> BaseGet(Store& base, Family f, const std::string& key) {
  auto v = base.Get(f, key);
  EXPECT_TRUE(v.ok());
  return v.ok() ? *v : std::nullopt;
}

absl::Status ScanAll(Store& store) {
  return store.Scan(Family::kJobs, "",
                    [](const std::string&, const std::string&) { return true; });
}

class FaultInjectingStoreTest : public ::testing::Test {
 protected:
  InMemoryStore base_;
  FaultInjectingStore store_{&base_};
};

TEST_F(FaultInjectingStoreTest, PassesThroughWhenHealthy) {
  ASSERT_TRUE(store_.Write(PutBatch(Family::kJobs, "a", "1")).ok());
  auto v = store_.Get(Family::kJobs, "a");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "1");
  EXPECT_TRUE(ScanAll(store_).ok());
  EXPECT_EQ(store_.ApproximateSizeBytes(), 0);
  const auto c = store_.counts();
  EXPECT_EQ(c.writes, 1);
  EXPECT_EQ(c.gets, 1);
  EXPECT_EQ(c.scans, 1);
  EXPECT_EQ(c.injected_failures, 0);
  // Real errors of the wrapped store come through unchanged.
  WriteBatch bad;
  bad.Merge(Family::kJobs, "a", "x");
  EXPECT_EQ(store_.Write(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.counts().injected_failures, 0);
}

TEST_F(FaultInjectingStoreTest, FailNextWrites) {
  store_.FailNextWrites(2, absl::AbortedError("boom"));
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "a", "1")).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "b", "1")).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "a"), std::nullopt);
  EXPECT_TRUE(store_.Get(Family::kJobs, "a").ok());  // reads unaffected
  ASSERT_TRUE(store_.Write(PutBatch(Family::kJobs, "c", "1")).ok());
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "c"), "1");
  EXPECT_EQ(store_.counts().injected_failures, 2);
  store_.FailNextWrites(1);
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "d", "1")).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(FaultInjectingStoreTest, FailNextReads) {
  ASSERT_TRUE(store_.Write(PutBatch(Family::kJobs, "a", "1")).ok());
  store_.FailNextReads(2);
  EXPECT_EQ(store_.Get(Family::kJobs, "a").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ScanAll(store_).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(store_.Get(Family::kJobs, "a").ok());
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "b", "1")).ok());  // writes unaffected
}

TEST_F(FaultInjectingStoreTest, CrashPointFailsEverythingUntilHealed) {
  store_.CrashAfterWrites(2);
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "a", "1")).ok());
  EXPECT_TRUE(store_.Get(Family::kJobs, "a").ok());
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "b", "1")).ok());
  EXPECT_FALSE(store_.crashed());
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "c", "1")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(store_.crashed());
  EXPECT_EQ(store_.Get(Family::kJobs, "a").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ScanAll(store_).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "d", "1")).code(),
            absl::StatusCode::kUnavailable);
  // Exactly the writes before the crash point reached the store.
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "b"), "1");
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "c"), std::nullopt);
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "d"), std::nullopt);
  store_.Heal();
  EXPECT_FALSE(store_.crashed());
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "e", "1")).ok());
  auto v = store_.Get(Family::kJobs, "b");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "1");
  EXPECT_EQ(store_.counts().injected_failures, 4);
}

TEST_F(FaultInjectingStoreTest, CrashAfterZeroWritesAndCrashNow) {
  store_.CrashAfterWrites(0);
  EXPECT_TRUE(store_.Get(Family::kJobs, "a").ok());  // not yet crashed
  EXPECT_FALSE(store_.Write(PutBatch(Family::kJobs, "a", "1")).ok());
  EXPECT_TRUE(store_.crashed());
  store_.Heal();
  store_.Crash();
  EXPECT_FALSE(store_.Get(Family::kJobs, "a").ok());
  store_.Heal();
  EXPECT_TRUE(store_.Get(Family::kJobs, "a").ok());
}

TEST_F(FaultInjectingStoreTest, FailWritesTouchingAFamily) {
  store_.FailWritesTouching(Family::kShards);
  WriteBatch mixed;
  mixed.Put(Family::kJobs, "j", "1");
  mixed.Put(Family::kShards, "s", "1");
  absl::Status s = store_.Write(mixed);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("shards"), absl::string_view::npos) << s;
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "j"), std::nullopt);
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "j", "1")).ok());
  EXPECT_FALSE(store_.Write(PutBatch(Family::kShards, "s", "1")).ok());
  store_.Heal();
  EXPECT_TRUE(store_.Write(PutBatch(Family::kShards, "s", "1")).ok());
}

TEST_F(FaultInjectingStoreTest, LostAckAppliesTheWrite) {
  store_.LoseNextWriteAcks(1);
  EXPECT_EQ(store_.Write(PutBatch(Family::kJobs, "a", "1")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(BaseGet(base_, Family::kJobs, "a"), "1");
  EXPECT_TRUE(store_.Write(PutBatch(Family::kJobs, "b", "1")).ok());
  EXPECT_EQ(store_.counts().injected_failures, 1);
  store_.ResetCounts();
  EXPECT_EQ(store_.counts().writes, 0);
}

}  // namespace
}  // namespace qcal::server
