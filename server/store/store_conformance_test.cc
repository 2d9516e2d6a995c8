// One suite, run against RocksDbStore (real on-disk RocksDB in a temporary
// directory) and InMemoryStore: the fake must behave like the real thing.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/store/in_memory_store.h"
#include "server/store/rocksdb_store.h"
#include "server/store/store.h"
#include "server/store/store_test_util.h"

namespace qcal::server {
namespace {

using ::qcal::server::testing::Iota;
using ::qcal::server::testing::MakePartial;
using ::qcal::server::testing::MatchesReference;
using ::qcal::server::testing::MergeDirectly;
using ::qcal::server::testing::Partial;
using ::qcal::server::testing::ScopedTempDir;

class InMemoryEnv {
 public:
  Store& store() { return store_; }
  // Nothing to reopen or flush: the object is the store.
  void Reopen() {}
  void Flush() {}

 private:
  InMemoryStore store_;
};

class RocksDbEnv {
 public:
  RocksDbEnv() { Open(); }
  Store& store() { return *store_; }
  void Reopen() {
    store_.reset();
    Open();
  }
  void Flush() {
    ASSERT_TRUE(store_->Flush().ok());
    ASSERT_TRUE(store_->CompactAll().ok());
  }

 private:
  void Open() {
    auto opened = RocksDbStore::Open(dir_.Sub("db"), RocksDbOptions());
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = *std::move(opened);
  }

  ScopedTempDir dir_;
  std::unique_ptr<RocksDbStore> store_;
};

template <typename Env>
class StoreTest : public ::testing::Test {
 protected:
  Store& store() { return env_.store(); }

  std::optional<std::string> GetOrDie(Family f, const std::string& key) {
    auto v = store().Get(f, key);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::nullopt;
  }
  void Put(Family f, std::string key, std::string value) {
    WriteBatch b;
    b.Put(f, std::move(key), std::move(value));
    ASSERT_TRUE(store().Write(b).ok());
  }
  absl::Status Merge(const std::string& key, const std::string& operand) {
    WriteBatch b;
    b.Merge(Family::kStats, key, operand);
    return store().Write(b);
  }
  std::vector<std::pair<std::string, std::string>> ScanAll(Family f,
                                                           const std::string& prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    absl::Status s =
        store().Scan(f, prefix, [&](const std::string& k, const std::string& v) {
          out.emplace_back(k, v);
          return true;
        });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  Env env_;
};

using Envs = ::testing::Types<InMemoryEnv, RocksDbEnv>;
class EnvNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, InMemoryEnv> ? "InMemory" : "RocksDb";
  }
};
TYPED_TEST_SUITE(StoreTest, Envs, EnvNames);

constexpr char kLinear[] = "model.layers.3.mlp.down_proj";

TYPED_TEST(StoreTest, AbsentKeysAreNullopt) {
  for (int f = 0; f < kNumFamilies; ++f) {
    EXPECT_EQ(this->GetOrDie(static_cast<Family>(f), "nope"), std::nullopt);
  }
}

TYPED_TEST(StoreTest, SchemaVersionIsStored) {
  EXPECT_EQ(this->GetOrDie(Family::kMeta, kSchemaVersionKey),
            std::to_string(kSchemaVersion));
}

TYPED_TEST(StoreTest, PutOverwriteDelete) {
  this->Put(Family::kJobs, "job-1", "v1");
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), "v1");
  this->Put(Family::kJobs, "job-1", "v2");
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), "v2");
  WriteBatch del;
  del.Delete(Family::kJobs, "job-1");
  del.Delete(Family::kJobs, "never-there");
  ASSERT_TRUE(this->store().Write(del).ok());
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), std::nullopt);
}

TYPED_TEST(StoreTest, FamiliesAreSeparate) {
  for (int f = 0; f < kNumFamilies; ++f) {
    if (static_cast<Family>(f) == Family::kStats) continue;
    this->Put(static_cast<Family>(f), "same-key", FamilyName(static_cast<Family>(f)));
  }
  for (int f = 0; f < kNumFamilies; ++f) {
    if (static_cast<Family>(f) == Family::kStats) {
      EXPECT_EQ(this->GetOrDie(Family::kStats, "same-key"), std::nullopt);
    } else {
      EXPECT_EQ(this->GetOrDie(static_cast<Family>(f), "same-key"),
                FamilyName(static_cast<Family>(f)));
    }
  }
}

TYPED_TEST(StoreTest, BinaryKeysAndValues) {
  const std::string key("a\0b\xff", 4);
  const std::string value("\0\x01\xff\0", 4);
  this->Put(Family::kTasks, key, value);
  this->Put(Family::kTasks, "", "empty key");
  EXPECT_EQ(this->GetOrDie(Family::kTasks, key), value);
  EXPECT_EQ(this->GetOrDie(Family::kTasks, std::string("a\0b", 3)), std::nullopt);
  EXPECT_EQ(this->GetOrDie(Family::kTasks, ""), "empty key");
}

// Random puts and deletes over a tiny alphabet (with \0 and \xff, the edge cases of
// prefix bounds), checked against a std::map model for Get and for every prefix.
TYPED_TEST(StoreTest, ScanMatchesModelForEveryPrefix) {
  const std::string alphabet("ab\0\xff", 4);
  std::mt19937 rng(3);
  auto random_string = [&](size_t max_len) {
    std::string s(rng() % (max_len + 1), 'a');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
  };
  std::map<std::string, std::string> model;
  for (int round = 0; round < 20; ++round) {
    WriteBatch batch;
    for (int i = 0; i < 20; ++i) {
      std::string key = random_string(4);
      if (rng() % 4 == 0) {
        model.erase(key);
        batch.Delete(Family::kShards, key);
      } else {
        std::string value = random_string(6) + std::to_string(round);
        model[key] = value;
        batch.Put(Family::kShards, key, value);
      }
    }
    ASSERT_TRUE(this->store().Write(batch).ok());
    if (round == 10) this->env_.Flush();
  }
  std::vector<std::string> prefixes = {""};
  for (char a : alphabet) {
    prefixes.push_back(std::string(1, a));
    for (char b : alphabet) prefixes.push_back(std::string(1, a) + b);
  }
  prefixes.push_back(std::string("\xff\xff\xff", 3));
  for (const std::string& prefix : prefixes) {
    std::vector<std::pair<std::string, std::string>> want;
    for (const auto& [k, v] : model) {
      if (k.compare(0, prefix.size(), prefix) == 0) want.emplace_back(k, v);
    }
    EXPECT_EQ(this->ScanAll(Family::kShards, prefix), want)
        << "prefix of " << prefix.size() << " bytes";
  }
  for (const auto& [k, v] : model) EXPECT_EQ(this->GetOrDie(Family::kShards, k), v);
  // Other families are not visited.
  EXPECT_TRUE(this->ScanAll(Family::kJobs, "").empty());
}

TYPED_TEST(StoreTest, ScanOrderAndEarlyStop) {
  for (const char* k : {"job-1/000000000010", "job-1/000000000002", "job-10/000000000000",
                        "job-1/000000000001", "job-1", "job-0/000000000005"}) {
    this->Put(Family::kShards, k, k);
  }
  const auto all = this->ScanAll(Family::kShards, "job-1/");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].first, "job-1/000000000001");
  EXPECT_EQ(all[1].first, "job-1/000000000002");
  EXPECT_EQ(all[2].first, "job-1/000000000010");
  int visited = 0;
  ASSERT_TRUE(
      this->store()
          .Scan(Family::kShards, "job-1",
                [&](const std::string&, const std::string&) { return ++visited < 2; })
          .ok());
  EXPECT_EQ(visited, 2);
  EXPECT_TRUE(this->ScanAll(Family::kShards, "job-2").empty());
}

TYPED_TEST(StoreTest, ScanSeesASnapshotAndMayCallBack) {
  this->Put(Family::kTasks, "t1", "a");
  this->Put(Family::kTasks, "t2", "b");
  std::vector<std::string> keys;
  ASSERT_TRUE(this->store()
                  .Scan(Family::kTasks, "t",
                        [&](const std::string& k, const std::string&) {
                          keys.push_back(k);
                          WriteBatch b;
                          b.Put(Family::kTasks, "t9", "written during the scan");
                          b.Delete(Family::kTasks, "t2");
                          EXPECT_TRUE(this->store().Write(b).ok());
                          EXPECT_TRUE(this->store().Get(Family::kTasks, "t1").ok());
                          return true;
                        })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(this->GetOrDie(Family::kTasks, "t9"), "written during the scan");
  EXPECT_EQ(this->GetOrDie(Family::kTasks, "t2"), std::nullopt);
}

TYPED_TEST(StoreTest, BatchOpsApplyInOrder) {
  WriteBatch b;
  b.Put(Family::kJobs, "a", "1");
  b.Delete(Family::kJobs, "a");
  b.Put(Family::kJobs, "b", "2");
  b.Put(Family::kJobs, "b", "3");
  b.Put(Family::kOperations, "op", "x");
  ASSERT_TRUE(this->store().Write(b).ok());
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "a"), std::nullopt);
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "b"), "3");
  EXPECT_EQ(this->GetOrDie(Family::kOperations, "op"), "x");
  EXPECT_TRUE(this->store().Write(WriteBatch()).ok());
}

TYPED_TEST(StoreTest, MergeOutsideStatsOrUnknownFamilyIsRejected) {
  const Partial p = MakePartial(kLinear, 4, 3, 2, 1);
  WriteBatch b;
  b.Put(Family::kJobs, "job-1", "x");
  b.Merge(Family::kJobs, "job-2", p.bytes);
  EXPECT_EQ(this->store().Write(b).code(), absl::StatusCode::kInvalidArgument);
  WriteBatch c;
  c.Put(Family::kJobs, "job-1", "x");
  c.Put(static_cast<Family>(kNumFamilies), "job-1", "x");
  EXPECT_EQ(this->store().Write(c).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), std::nullopt);
  EXPECT_EQ(this->store().Get(static_cast<Family>(-1), "k").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store()
                .Scan(static_cast<Family>(99), "",
                      [](const std::string&, const std::string&) { return true; })
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// A batch with a bad kStats operand applies nothing, whatever is wrong with it.
TYPED_TEST(StoreTest, BatchWithBadMergeAppliesNothing) {
  const Partial a = MakePartial(kLinear, 4, 3, 2, 1);
  ASSERT_TRUE(this->Merge("job-1/000000", a.bytes).ok());

  const Partial wrong_in = MakePartial(kLinear, 5, 3, 2, 2);
  const Partial wrong_out = MakePartial(kLinear, 4, 6, 2, 3);
  const Partial wrong_name = MakePartial("lm_head", 4, 3, 2, 4);
  std::string flipped = a.bytes;
  flipped[flipped.size() / 2] ^= 0x5a;
  const std::vector<std::string> bad = {"not a proto \xff\xff", a.bytes.substr(0, 10),
                                        wrong_in.bytes, wrong_out.bytes,
                                        wrong_name.bytes};
  for (size_t i = 0; i < bad.size(); ++i) {
    WriteBatch b;
    b.Put(Family::kJobs, "job-1", "DONE");
    b.Merge(Family::kStats, "job-1/000001", a.bytes);  // a new key: fine alone
    b.Merge(Family::kStats, "job-1/000000", bad[i]);
    b.Put(Family::kShards, "job-1/000000000000", "DONE");
    EXPECT_EQ(this->store().Write(b).code(), absl::StatusCode::kInvalidArgument) << i;
    EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), std::nullopt) << i;
    EXPECT_EQ(this->GetOrDie(Family::kShards, "job-1/000000000000"), std::nullopt) << i;
    EXPECT_EQ(this->GetOrDie(Family::kStats, "job-1/000001"), std::nullopt) << i;
    auto stored = this->GetOrDie(Family::kStats, "job-1/000000");
    ASSERT_TRUE(stored.has_value());
    EXPECT_TRUE(MatchesReference(*stored, kLinear, MergeDirectly({a}, {0}))) << i;
  }
  // The flipped byte may or may not still parse; if it is accepted, it merged.
  absl::Status s = this->Merge("job-1/000000", flipped);
  EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
  // Still writable afterwards.
  ASSERT_TRUE(this->Merge("job-1/000002", a.bytes).ok());
}

TYPED_TEST(StoreTest, MismatchedOperandsWithinOneBatchAreRejected) {
  const Partial a = MakePartial(kLinear, 4, 3, 2, 1);
  const Partial b = MakePartial(kLinear, 4, 7, 2, 2);
  WriteBatch batch;
  batch.Merge(Family::kStats, "k", a.bytes);
  batch.Merge(Family::kStats, "k", b.bytes);
  EXPECT_EQ(this->store().Write(batch).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->GetOrDie(Family::kStats, "k"), std::nullopt);
}

TYPED_TEST(StoreTest, PutIntoStatsIsValidated) {
  WriteBatch bad;
  bad.Put(Family::kJobs, "job-1", "x");
  bad.Put(Family::kStats, "k", "garbage");
  EXPECT_EQ(this->store().Write(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), std::nullopt);
  // A valid Put is a base that merges continue from; another shape may replace it.
  const Partial a = MakePartial(kLinear, 4, 3, 2, 1);
  const Partial b = MakePartial(kLinear, 4, 3, 3, 2);
  const Partial other = MakePartial(kLinear, 8, 8, 1, 3);
  this->Put(Family::kStats, "k", a.bytes);
  ASSERT_TRUE(this->Merge("k", b.bytes).ok());
  auto v = this->GetOrDie(Family::kStats, "k");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly({a, b}, {0, 1})));
  this->Put(Family::kStats, "k", other.bytes);
  EXPECT_EQ(this->Merge("k", a.bytes).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(this->Merge("k", other.bytes).ok());
  v = this->GetOrDie(Family::kStats, "k");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly({other, other}, {0, 1})));
}

TYPED_TEST(StoreTest, DeleteResetsTheShape) {
  const Partial a = MakePartial(kLinear, 4, 3, 2, 1);
  const Partial b = MakePartial(kLinear, 5, 5, 2, 2);
  ASSERT_TRUE(this->Merge("k", a.bytes).ok());
  WriteBatch batch;
  batch.Delete(Family::kStats, "k");
  batch.Merge(Family::kStats, "k", b.bytes);
  ASSERT_TRUE(this->store().Write(batch).ok());
  auto v = this->GetOrDie(Family::kStats, "k");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly({b}, {0})));
  WriteBatch del;
  del.Delete(Family::kStats, "k");
  ASSERT_TRUE(this->store().Write(del).ok());
  ASSERT_TRUE(this->Merge("k", a.bytes).ok());
}

TYPED_TEST(StoreTest, MergesEqualDirectMergeInSeveralOrders) {
  std::vector<Partial> parts;
  for (int i = 0; i < 6; ++i) {
    parts.push_back(MakePartial(kLinear, 40, 24, 5 + i, 10 + static_cast<uint32_t>(i)));
  }
  const auto ref = MergeDirectly(parts, Iota(parts.size()));
  const std::vector<std::vector<size_t>> orders = {
      Iota(6), {5, 4, 3, 2, 1, 0}, {3, 1, 5, 0, 2, 4}};
  for (size_t o = 0; o < orders.size(); ++o) {
    // One Write per operand.
    const std::string key = "job-1/" + std::to_string(o);
    for (size_t i : orders[o]) ASSERT_TRUE(this->Merge(key, parts[i].bytes).ok());
    auto v = this->GetOrDie(Family::kStats, key);
    ASSERT_TRUE(v.has_value());
    EXPECT_TRUE(MatchesReference(*v, kLinear, ref)) << "order " << o;
    // All operands in one batch.
    const std::string batch_key = "job-2/" + std::to_string(o);
    WriteBatch b;
    for (size_t i : orders[o]) b.Merge(Family::kStats, batch_key, parts[i].bytes);
    ASSERT_TRUE(this->store().Write(b).ok());
    v = this->GetOrDie(Family::kStats, batch_key);
    ASSERT_TRUE(v.has_value());
    EXPECT_TRUE(MatchesReference(*v, kLinear, ref)) << "batch order " << o;
  }
  // Interleaved with flushes and compactions (RocksDB then partially merges).
  const std::string key = "job-3/0";
  for (size_t i = 0; i < parts.size(); ++i) {
    ASSERT_TRUE(this->Merge(key, parts[i].bytes).ok());
    if (i % 2 == 1) this->env_.Flush();
  }
  auto v = this->GetOrDie(Family::kStats, key);
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, ref));
  // Scan returns the merged values too.
  const auto scanned = this->ScanAll(Family::kStats, "job-1/");
  ASSERT_EQ(scanned.size(), orders.size());
  for (const auto& [k, value] : scanned)
    EXPECT_TRUE(MatchesReference(value, kLinear, ref)) << k;
}

TYPED_TEST(StoreTest, MergedValuesSurviveReopen) {
  std::vector<Partial> parts;
  for (int i = 0; i < 5; ++i) {
    parts.push_back(MakePartial(kLinear, 16, 32, 3 + i, 50 + static_cast<uint32_t>(i)));
  }
  // Unmerged operands only in the WAL / memtable.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(this->Merge("a", parts[i].bytes).ok());
  this->Put(Family::kJobs, "job-1", "RUNNING");
  this->env_.Reopen();
  auto v = this->GetOrDie(Family::kStats, "a");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly(parts, {0, 1})));
  EXPECT_EQ(this->GetOrDie(Family::kJobs, "job-1"), "RUNNING");
  // Operands on both sides of a flush, then a reopen.
  ASSERT_TRUE(this->Merge("a", parts[2].bytes).ok());
  this->env_.Flush();
  ASSERT_TRUE(this->Merge("a", parts[3].bytes).ok());
  ASSERT_TRUE(this->Merge("a", parts[4].bytes).ok());
  this->env_.Reopen();
  v = this->GetOrDie(Family::kStats, "a");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly(parts, Iota(5))));
  // The shape check still holds after a reopen.
  const Partial wrong = MakePartial(kLinear, 17, 32, 1, 9);
  EXPECT_EQ(this->Merge("a", wrong.bytes).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->GetOrDie(Family::kMeta, kSchemaVersionKey),
            std::to_string(kSchemaVersion));
}

TYPED_TEST(StoreTest, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 6;
  std::vector<Partial> parts;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    parts.push_back(MakePartial(kLinear, 12, 20, 2, 500 + static_cast<uint32_t>(i)));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        WriteBatch b;
        b.Merge(Family::kStats, "shared", parts[t * kPerThread + i].bytes);
        b.Put(Family::kShards, "s/" + std::to_string(t * kPerThread + i), "DONE");
        EXPECT_TRUE(this->store().Write(b).ok());
        EXPECT_TRUE(this->store().Get(Family::kStats, "shared").ok());
        WriteBatch other;
        other.Put(Family::kTasks, "t/" + std::to_string(t), std::to_string(i));
        EXPECT_TRUE(this->store().Write(other).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto v = this->GetOrDie(Family::kStats, "shared");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(MatchesReference(*v, kLinear, MergeDirectly(parts, Iota(parts.size()))));
  EXPECT_EQ(this->ScanAll(Family::kShards, "s/").size(), parts.size());
}

}  // namespace
}  // namespace qcal::server
