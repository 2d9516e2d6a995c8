// RocksDbStore specifics: opening (locks, schema versions, bad paths), corrupt data
// on disk and the merge operator. The behaviour shared with InMemoryStore is in
// store_conformance_test.cc.
#include "server/store/rocksdb_store.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "server/store/store_test_util.h"

namespace qcal::server {
namespace {

using ::qcal::server::testing::MakePartial;
using ::qcal::server::testing::MatchesReference;
using ::qcal::server::testing::MergeDirectly;
using ::qcal::server::testing::Partial;
using ::qcal::server::testing::ScopedTempDir;

constexpr char kLinear[] = "model.layers.0.self_attn.q_proj";
// Set in the environment of the lock-holding child process (see LockHolder below).
constexpr char kHoldLockEnv[] = "QCAL_STORE_TEST_HOLD_LOCK_DIR";

std::unique_ptr<RocksDbStore> OpenOrDie(const std::string& dir,
                                        const RocksDbOptions& options = {}) {
  auto opened = RocksDbStore::Open(dir, options);
  EXPECT_TRUE(opened.ok()) << opened.status();
  return opened.ok() ? *std::move(opened) : nullptr;
}

absl::Status Write1(Store& store, WriteBatch::OpType type, Family f, std::string key,
                    std::string value = "") {
  WriteBatch b;
  if (type == WriteBatch::OpType::kPut) b.Put(f, std::move(key), std::move(value));
  if (type == WriteBatch::OpType::kDelete) b.Delete(f, std::move(key));
  if (type == WriteBatch::OpType::kMerge) b.Merge(f, std::move(key), std::move(value));
  return store.Write(b);
}

bool Contains(const absl::Status& s, const std::string& text) {
  return s.message().find(text) != absl::string_view::npos;
}

TEST(RocksDbStoreTest, CreatesNestedDirectoriesAndReportsSize) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("a/b/db");
  auto store = OpenOrDie(dir);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->dir(), dir);
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(dir) / "CURRENT"));
  const Partial p = MakePartial(kLinear, 256, 256, 8, 1);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Write1(*store, WriteBatch::OpType::kMerge, Family::kStats,
                       "job/" + std::to_string(i), p.bytes)
                    .ok());
  }
  const int64_t in_memtables = store->ApproximateSizeBytes();
  EXPECT_GT(in_memtables, 0);
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_GT(store->ApproximateSizeBytes(), static_cast<int64_t>(20 * 256 * 24));
}

TEST(RocksDbStoreTest, MissingDatabaseWithoutCreateIsNotFound) {
  ScopedTempDir tmp;
  RocksDbOptions options;
  options.create_if_missing = false;
  auto opened = RocksDbStore::Open(tmp.Sub("none"), options);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(opened.status(), tmp.Sub("none"))) << opened.status();
}

TEST(RocksDbStoreTest, PathThatIsAFileFailsNamingIt) {
  ScopedTempDir tmp;
  const std::string file = tmp.Sub("file");
  std::ofstream(file) << "x";
  auto opened = RocksDbStore::Open(file, {});
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(Contains(opened.status(), file)) << opened.status();
  opened = RocksDbStore::Open(file + "/db", {});
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(Contains(opened.status(), file)) << opened.status();
  EXPECT_EQ(RocksDbStore::Open("", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RocksDbStoreTest, SecondOpenInThisProcessIsUnavailable) {
  ScopedTempDir tmp;
  auto first = OpenOrDie(tmp.Sub("db"));
  auto second = RocksDbStore::Open(tmp.Sub("db"), {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_TRUE(Contains(second.status(), tmp.Sub("db"))) << second.status();
  EXPECT_TRUE(Contains(second.status(), "locked")) << second.status();
  first.reset();
  EXPECT_NE(OpenOrDie(tmp.Sub("db")), nullptr);
}

// Runs only inside the child process that LockedByAnotherProcess starts: opens the
// store, says so with a "ready" file, and holds it until a "release" file appears.
TEST(RocksDbStoreLockHolder, HoldLock) {
  const char* dir = std::getenv(kHoldLockEnv);
  if (dir == nullptr) GTEST_SKIP() << "helper for LockedByAnotherProcess";
  auto store = OpenOrDie(dir);
  ASSERT_NE(store, nullptr);
  std::ofstream(std::string(dir) + ".ready") << "1";
  for (int i = 0; i < 3000 && !std::filesystem::exists(std::string(dir) + ".release");
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

TEST(RocksDbStoreTest, LockedByAnotherProcessIsUnavailable) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  OpenOrDie(dir).reset();  // exists, closed

  // A fresh process (fork + exec of this test binary), so no RocksDB state is shared.
  const std::string env = std::string(kHoldLockEnv) + "=" + dir;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(const_cast<char*>(env.c_str()));
  envp.push_back(nullptr);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=RocksDbStoreLockHolder.HoldLock";
  char* argv[] = {self.data(), filter.data(), nullptr};
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execve(self.c_str(), argv, envp.data());
    _exit(127);
  }
  bool ready = false;
  for (int i = 0; i < 3000 && !ready; ++i) {
    ready = std::filesystem::exists(dir + ".ready");
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(ready) << "the child never opened the store";
  if (ready) {
    auto opened = RocksDbStore::Open(dir, {});
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable) << opened.status();
    EXPECT_TRUE(Contains(opened.status(), dir)) << opened.status();
    EXPECT_TRUE(Contains(opened.status(), "another qcal-coordinator")) << opened.status();
  }
  std::ofstream(dir + ".release") << "1";
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  EXPECT_NE(OpenOrDie(dir), nullptr);  // free again
}

TEST(RocksDbStoreTest, UnknownSchemaVersionIsRefused) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  {
    auto store = OpenOrDie(dir);
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kPut, Family::kMeta, kSchemaVersionKey,
               std::to_string(kSchemaVersion + 1))
            .ok());
  }
  auto opened = RocksDbStore::Open(dir, {});
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(opened.status(), dir)) << opened.status();
  EXPECT_TRUE(Contains(opened.status(), absl::StrCat("schema version '", kSchemaVersion + 1, "'")))
      << opened.status();
}

TEST(RocksDbStoreTest, DataWithoutSchemaVersionIsRefused) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  {
    auto store = OpenOrDie(dir);
    WriteBatch b;
    b.Delete(Family::kMeta, kSchemaVersionKey);
    b.Put(Family::kJobs, "job-1", "x");
    ASSERT_TRUE(store->Write(b).ok());
  }
  auto opened = RocksDbStore::Open(dir, {});
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(opened.status(), "no schema version")) << opened.status();
}

TEST(RocksDbStoreTest, EmptyDatabaseWithoutSchemaVersionGetsOne) {
  // As after a crash between creating the database and writing the version.
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  {
    auto store = OpenOrDie(dir);
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kDelete, Family::kMeta, kSchemaVersionKey)
            .ok());
  }
  auto store = OpenOrDie(dir);
  ASSERT_NE(store, nullptr);
  auto v = store->Get(Family::kMeta, kSchemaVersionKey);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, std::to_string(kSchemaVersion));
}

TEST(RocksDbStoreTest, UnknownColumnFamilyIsRefused) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir, &db).ok());
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    ASSERT_TRUE(
        db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "future", &cf).ok());
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(cf).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  auto opened = RocksDbStore::Open(dir, {});
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition)
      << opened.status();
  EXPECT_TRUE(Contains(opened.status(), dir)) << opened.status();
}

TEST(RocksDbStoreTest, SyncWritesAreDurable) {
  ScopedTempDir tmp;
  RocksDbOptions options;
  options.sync_writes = true;
  options.block_cache_mb = 1;
  const Partial p = MakePartial(kLinear, 8, 8, 2, 1);
  {
    auto store = OpenOrDie(tmp.Sub("db"), options);
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "k", p.bytes).ok());
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "k", p.bytes).ok());
  }
  auto store = OpenOrDie(tmp.Sub("db"), options);
  auto v = store->Get(Family::kStats, "k");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_TRUE(MatchesReference(**v, kLinear, MergeDirectly({p, p}, {0, 1})));
}

TEST(RocksDbStoreTest, MergeOperatorMergesFullyAndPartially) {
  ScopedTempDir tmp;
  auto store = OpenOrDie(tmp.Sub("db"));
  std::vector<Partial> parts;
  for (int i = 0; i < 6; ++i) {
    parts.push_back(MakePartial(kLinear, 32, 16, 3, 20 + static_cast<uint32_t>(i)));
  }
  // Operands without a base in each memtable: the flush merges them partially.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "k", parts[i].bytes)
            .ok());
  }
  ASSERT_TRUE(store->Flush().ok());
  for (int i = 3; i < 6; ++i) {
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "k", parts[i].bytes)
            .ok());
  }
  ASSERT_TRUE(store->Flush().ok());
  ASSERT_TRUE(store->CompactAll().ok());
  auto v = store->Get(Family::kStats, "k");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_TRUE(MatchesReference(**v, kLinear, MergeDirectly(parts, testing::Iota(6))));
  const auto counters = store->merge_counters();
  EXPECT_GT(counters.full_merges, 0u);
  EXPECT_GT(counters.partial_merges, 0u);
  EXPECT_EQ(counters.failures, 0u);
}

// A corrupt operand on disk (here written past the checks, as a damaged disk or an
// older bug would leave it) fails reads of that key with DATA_LOSS, never crashes.
TEST(RocksDbStoreTest, CorruptStoredOperandGivesDataLoss) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  const Partial good = MakePartial(kLinear, 8, 8, 2, 1);
  {
    auto store = OpenOrDie(dir);
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "job/0", good.bytes)
            .ok());
    ASSERT_TRUE(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "job/1", good.bytes)
            .ok());
    WriteBatch corrupt;
    corrupt.Merge(Family::kStats, "job/0", "\x0a\xff\xff garbage");
    ASSERT_TRUE(store->WriteUncheckedForTesting(corrupt).ok());

    auto v = store->Get(Family::kStats, "job/0");
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss) << v.status();
    EXPECT_TRUE(Contains(v.status(), "stats key 'job/0'")) << v.status();
    EXPECT_TRUE(Contains(v.status(), "not a valid LinearStatsProto")) << v.status();
    EXPECT_TRUE(Contains(v.status(), dir)) << v.status();
    EXPECT_GT(store->merge_counters().failures, 0u);
    // Other keys are fine; a scan over the bad key fails; merging into it fails.
    auto other = store->Get(Family::kStats, "job/1");
    ASSERT_TRUE(other.ok() && other->has_value());
    absl::Status scan =
        store->Scan(Family::kStats, "job/",
                    [](const std::string&, const std::string&) { return true; });
    EXPECT_EQ(scan.code(), absl::StatusCode::kDataLoss) << scan;
    EXPECT_EQ(
        Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "job/0", good.bytes)
            .code(),
        absl::StatusCode::kDataLoss);
    // A compaction that meets it fails without crashing.
    EXPECT_FALSE(store->CompactAll().ok());
  }
  // Still there after a reopen, until the key is rewritten.
  auto store = OpenOrDie(dir);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Get(Family::kStats, "job/0").status().code(),
            absl::StatusCode::kDataLoss);
  ASSERT_TRUE(
      Write1(*store, WriteBatch::OpType::kPut, Family::kStats, "job/0", good.bytes).ok());
  auto v = store->Get(Family::kStats, "job/0");
  ASSERT_TRUE(v.ok() && v->has_value()) << v.status();
  EXPECT_EQ(**v, good.bytes);
  ASSERT_TRUE(
      Write1(*store, WriteBatch::OpType::kMerge, Family::kStats, "job/0", good.bytes)
          .ok());
  EXPECT_TRUE(store->CompactAll().ok());
}

}  // namespace
}  // namespace qcal::server

namespace qcal::server {
namespace {

// The newest file in `dir` whose name ends with `suffix` ("" when none).
std::string NewestFile(const std::string& dir, const std::string& suffix) {
  std::string newest;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name > std::filesystem::path(newest).filename().string()) {
      newest = e.path().string();
    }
  }
  return newest;
}

void FlipByteAt(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(at);
  f.write(&c, 1);
}

// Issue 15, finding 2: one flipped byte in the write-ahead log made RocksDB's
// default replay drop everything after it without a word. Strict replay refuses to
// open, naming the log; the consistent-point replay opens, keeps everything before
// the corruption and says what it dropped.
TEST(RocksDbStoreTest, ACorruptLogRefusesToOpenUnlessRecoveryIsAsked) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  constexpr int kRecords = 64;
  {
    auto store = OpenOrDie(dir);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_TRUE(Write1(*store, WriteBatch::OpType::kPut, Family::kJobs,
                         absl::StrCat("job-", 100 + i), std::string(1000, 'a' + i % 26))
                      .ok());
    }
  }  // closed without a flush: the records live in the log only
  const std::string log = NewestFile(dir, ".log");
  ASSERT_FALSE(log.empty());
  FlipByteAt(log, static_cast<std::streamoff>(std::filesystem::file_size(log) / 2));

  auto strict = RocksDbStore::Open(dir, {});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kDataLoss) << strict.status();
  EXPECT_TRUE(Contains(strict.status(), ".log")) << strict.status();

  RocksDbOptions recover;
  recover.wal_recovery = RocksDbOptions::WalRecovery::kToConsistentPoint;
  {
    auto store = OpenOrDie(dir, recover);
    ASSERT_NE(store, nullptr);
    ASSERT_FALSE(store->recovery_notes().empty());
    EXPECT_NE(store->recovery_notes().front().find("dropping"), std::string::npos)
        << store->recovery_notes().front();
    int kept = 0;
    ASSERT_TRUE(store->Scan(Family::kJobs, "", [&](const std::string& key, const std::string&) {
                        EXPECT_EQ(key, absl::StrCat("job-", 100 + kept)) << "a prefix survives";
                        ++kept;
                        return true;
                      }).ok());
    EXPECT_GT(kept, 0);
    EXPECT_LT(kept, kRecords);
  }
  // Recovered to a consistent point, it opens strictly again.
  auto again = RocksDbStore::Open(dir, {});
  EXPECT_TRUE(again.ok()) << again.status();
}

// A flipped byte in a table file is found by Verify, not only when that record is
// read.
TEST(RocksDbStoreTest, VerifyFindsACorruptTableFile) {
  ScopedTempDir tmp;
  const std::string dir = tmp.Sub("db");
  {
    auto store = OpenOrDie(dir);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 64; ++i) {
      ASSERT_TRUE(Write1(*store, WriteBatch::OpType::kPut, Family::kTasks,
                         absl::StrCat("job-1.t", 100 + i), std::string(2000, 'x'))
                      .ok());
    }
    ASSERT_TRUE(store->Flush().ok());
    auto counts = store->Verify();
    ASSERT_TRUE(counts.ok()) << counts.status();
    EXPECT_EQ((*counts)[static_cast<int>(Family::kTasks)], 64);
  }
  const std::string sst = NewestFile(dir, ".sst");
  ASSERT_FALSE(sst.empty());
  FlipByteAt(sst, 100);
  auto store = RocksDbStore::Open(dir, {});
  ASSERT_TRUE(store.ok()) << store.status();
  auto counts = (*store)->Verify();
  ASSERT_FALSE(counts.ok());
  EXPECT_EQ(counts.status().code(), absl::StatusCode::kDataLoss) << counts.status();
}

}  // namespace
}  // namespace qcal::server
