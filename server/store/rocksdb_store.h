// RocksDbStore: the production Store, one RocksDB database in one directory with one
// column family per Family (named by FamilyName) and a LinearStatsMergeOperator on
// the stats family.
//
// Open creates the database (and missing parent directories) when absent, writes
// kMeta[kSchemaVersionKey] into a new database, and refuses one with another schema
// version (FAILED_PRECONDITION). A directory that another process (or another
// RocksDbStore in this process) holds open gives UNAVAILABLE naming the directory:
// retry once the other coordinator has exited. Every error message names the
// directory.
//
// Write maps the WriteBatch onto one rocksdb::WriteBatch (atomic). kStats Puts and
// Merges are checked first (store.h): operands are validated, and their shape is
// compared with the key's current value through an in-memory cache of shapes, so
// kStats writes are serialized among themselves; the commits of all writes are
// serialized (see the suspension below). Get and
// Scan of a kStats key run the merge; a corrupt operand on disk gives DATA_LOSS
// with the merge error (and is logged), never a crash.
//
// RocksDB's info log goes to stderr (warnings and errors only), never to a LOG file
// on the database volume (see RocksLogger in the .cc).
//
// A write that fails with an I/O error (a full disk among them) suspends writes:
// every later Write fails at once with the first failure (RESOURCE_EXHAUSTED for
// no space, UNAVAILABLE otherwise) without reaching RocksDB, whose log writer aborts
// the process if appended to again after an error (Debian's librocksdb 7.8 keeps
// its assertions: writable_file_writer.h "sync_without_flush_called_"). ResumeWrites
// closes and reopens the database (a new log; the torn tail dropped) and lifts the
// suspension. Reads keep working while suspended.
//
// Thread-safety: all methods may be called concurrently (ResumeWrites waits for the
// calls in flight). The destructor closes the database; no call may be in flight then.
#ifndef QCAL_SERVER_STORE_ROCKSDB_STORE_H_
#define QCAL_SERVER_STORE_ROCKSDB_STORE_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/store/linear_stats_merge_operator.h"
#include "server/store/stats_merge.h"
#include "server/store/store.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace qcal::server {
class RocksLogger;
}  // namespace qcal::server

namespace qcal::server {

struct RocksDbOptions {
  // fsync the WAL on every Write: a Write that returned OK then survives a machine
  // crash, not only a process crash. Costs a disk flush per Write.
  bool sync_writes = false;
  // LRU block cache shared by all families, in MiB.
  size_t block_cache_mb = 64;
  // Create the database when `dir` holds none; otherwise Open fails with NOT_FOUND.
  bool create_if_missing = true;
  // RocksDB background flush/compaction threads.
  int max_background_jobs = 2;
  // Memtable size of the statistics family, in MiB (up to 3 are kept).
  int stats_write_buffer_mb = 128;
  // How Open replays the write-ahead log. kStrict: a torn last record (a crash or a
  // full disk mid-append: never acknowledged) is dropped, any other corrupt record
  // refuses to open with DATA_LOSS naming the log file, so acknowledged writes are
  // never lost silently. kToConsistentPoint: replay up to the first corrupt record
  // and drop the rest; recovery_notes() then says what RocksDB dropped.
  enum class WalRecovery { kStrict, kToConsistentPoint };
  WalRecovery wal_recovery = WalRecovery::kStrict;
};

class RocksDbStore : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(
      const std::string& dir, const RocksDbOptions& options);
  ~RocksDbStore() override;
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  absl::StatusOr<std::optional<std::string>> Get(Family f,
                                                 const std::string& key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::Status Scan(Family f, const std::string& prefix,
                    const std::function<bool(const std::string& key,
                                             const std::string& value)>& fn) override;
  // SST files of all families plus their memtables.
  int64_t ApproximateSizeBytes() override;
  std::optional<int64_t> FreeBytes() override;
  std::string Location() override { return dir_; }
  bool WritesSuspended() override { return suspended_.load(); }
  absl::Status ResumeWrites() override;

  // What RocksDB reported while replaying the log at Open: log files with corrupt
  // records and the bytes it dropped (its info log's lines), empty when clean.
  const std::vector<std::string>& recovery_notes() const { return recovery_notes_; }

  // Reads every block of every table file with its checksum (DB::VerifyChecksum)
  // and every record of every family (merges included). OK with the record count
  // per family, or DATA_LOSS naming what is corrupt.
  absl::StatusOr<std::array<int64_t, kNumFamilies>> Verify();

  // Flushes every memtable to SST files (the WAL already makes writes durable).
  absl::Status Flush();
  // Compacts every family fully (merges all operands); for tests and maintenance.
  absl::Status CompactAll();

  const std::string& dir() const { return dir_; }
  // Merge operator activity since Open (for metrics and tests).
  LinearStatsMergeOperator::Counters merge_counters() const;

  // Writes the batch with the structural checks only, skipping the kStats value
  // checks: lets tests store corrupt operands as a damaged disk would.
  absl::Status WriteUncheckedForTesting(const WriteBatch& batch);

 private:
  // Shape of a kStats key's current value; nullopt when absent.
  using ShapeEntry = std::optional<LinearStatsShape>;

  RocksDbStore(std::string dir, const RocksDbOptions& options);
  absl::Status InitSchema();
  // Opens the database with the families; `strict` picks the log replay mode
  // (WalRecovery). Fills db_, handles_ and recovery_notes_.
  absl::Status OpenDb(bool strict);
  void CloseDb();
  rocksdb::ColumnFamilyHandle* Handle(Family f) const;
  // A call's use of db_: ResumeWrites waits for every use to end before it closes
  // the database, and while it reopens EnterDb fails fast (UNAVAILABLE) instead of
  // waiting, so a Scan callback that calls the store again can never deadlock.
  class DbUse {
   public:
    explicit DbUse(RocksDbStore* store) : store_(store) {}
    DbUse(DbUse&& other) noexcept : store_(std::exchange(other.store_, nullptr)) {}
    DbUse& operator=(DbUse&&) = delete;
    ~DbUse() {
      if (store_ != nullptr) store_->LeaveDb();
    }

   private:
    RocksDbStore* store_;
  };
  absl::StatusOr<DbUse> EnterDb();
  void LeaveDb();
  // Get inside a use already entered (or during Open).
  absl::StatusOr<std::optional<std::string>> GetLocked(Family f, const std::string& key);
  absl::Status Commit(const WriteBatch& batch);
  // The status of every Write while suspended.
  absl::Status SuspendedError() const;
  // The shape of `key`'s current value from the cache, else from a Get.
  absl::StatusOr<ShapeEntry> CurrentShape(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_mu_);

  const std::string dir_;
  const RocksDbOptions options_;
  const bool sync_writes_;
  // Calls using db_ now (DbUse) and whether ResumeWrites is reopening it.
  absl::Mutex use_mu_;
  int users_ ABSL_GUARDED_BY(use_mu_) = 0;
  bool reopening_ ABSL_GUARDED_BY(use_mu_) = false;
  // Serializes the writes that reach RocksDB (Commit).
  absl::Mutex commit_mu_;
  std::atomic<bool> suspended_{false};
  mutable absl::Mutex suspend_mu_;
  absl::Status suspend_reason_ ABSL_GUARDED_BY(suspend_mu_);
  std::vector<std::string> recovery_notes_;
  std::shared_ptr<RocksLogger> logger_;  // RocksDB's info log (see the .cc)
  std::shared_ptr<LinearStatsMergeOperator> merge_operator_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_handle_ = nullptr;
  std::array<rocksdb::ColumnFamilyHandle*, kNumFamilies> handles_{};

  // Serializes Writes that touch kStats, so a shape check and its commit are atomic.
  absl::Mutex stats_mu_;
  absl::flat_hash_map<std::string, ShapeEntry> shape_cache_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_ROCKSDB_STORE_H_
