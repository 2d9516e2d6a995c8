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
// kStats writes are serialized among themselves (other writes are not). Get and
// Scan of a kStats key run the merge; a corrupt operand on disk gives DATA_LOSS
// with the merge error (and is logged), never a crash.
//
// Thread-safety: all methods may be called concurrently. The destructor closes the
// database; no call may be in flight then.
#ifndef QCAL_SERVER_STORE_ROCKSDB_STORE_H_
#define QCAL_SERVER_STORE_ROCKSDB_STORE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

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
  rocksdb::ColumnFamilyHandle* Handle(Family f) const;
  absl::Status Commit(const WriteBatch& batch);
  // The shape of `key`'s current value from the cache, else from a Get.
  absl::StatusOr<ShapeEntry> CurrentShape(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_mu_);

  const std::string dir_;
  const bool sync_writes_;
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
