// The coordinator's durable state behind one narrow interface (leveldb's Env idea):
// RocksDbStore in production, InMemoryStore for fast tests, FaultInjectingStore to
// make any of them fail on purpose.
//
// Data lives in families (RocksDB column families):
//   kJobs        job id -> qcal.v1 JobRecord (serialized)
//   kTasks       task id -> TaskRecord
//   kShards      "<job id>/<shard index, 12 digits>" -> ShardRecord
//   kStats       "<job id>/<linear index, 6 digits>" -> qcal.v1.LinearStatsProto,
//                accumulated with Merge (a RocksDB MergeOperator): the merge of two
//                LinearStatsProto values is their statistics merged (MergeLinearStats)
//   kOperations  operation id -> OperationRecord
//   kMeta        small singletons (id counters, schema version)
// Keys within a family sort bytewise; Scan visits them in that order.
//
// kStats values are checked on Write, identically by every implementation: a Put
// value or Merge operand must parse and validate as a LinearStatsProto (stats_proto.h
// rules, non-empty name), and a Merge operand must have the name and channel counts
// of the key's current value (if any). Otherwise the whole batch fails with
// INVALID_ARGUMENT and nothing is applied, so a bad report never makes a key
// unreadable. A value that is nevertheless corrupt on disk makes Get/Scan of it fail
// (DATA_LOSS), never crash.
//
// Every store holds kMeta[kSchemaVersionKey] (decimal) from creation on: a new one
// kSchemaVersion. RocksDbStore opens versions kOldestSchemaVersion..kSchemaVersion
// and refuses any other; the coordinator migrates an older one when it loads it
// (Coordinator::Create), rewriting the version in the same batch as the records.
//
// Versions: 1 (qcal before the work kinds: an operation's finished work was
// JOB_CALIBRATED), 2 (it is JOB_SUCCEEDED).
//
// Atomicity: Write applies a whole WriteBatch or nothing. Durability: a Write that
// returned OK survives a crash of the process (and of the machine with sync writes).
// Thread-safety: every method may be called from any thread.
#ifndef QCAL_SERVER_STORE_STORE_H_
#define QCAL_SERVER_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qcal::server {

enum class Family { kJobs, kTasks, kShards, kStats, kOperations, kMeta };
inline constexpr int kNumFamilies = 6;
// "jobs", "tasks", ... (RocksDB column family names); "?" for a value outside the enum.
const char* FamilyName(Family f);
// True for the six enumerators (a WriteBatch with anything else is INVALID_ARGUMENT).
inline bool IsValidFamily(Family f) {
  return static_cast<int>(f) >= 0 && static_cast<int>(f) < kNumFamilies;
}

// The schema of the stored data (key layout and value types). Bump it, with a
// migration, whenever a stored format changes incompatibly.
inline constexpr char kSchemaVersionKey[] = "schema_version";  // in Family::kMeta
inline constexpr int kSchemaVersion = 2;
inline constexpr int kOldestSchemaVersion = 1;

class WriteBatch {
 public:
  enum class OpType { kPut, kDelete, kMerge };
  struct Op {
    OpType type;
    Family family;
    std::string key;
    std::string value;  // Put value or Merge operand; empty for Delete
  };
  void Put(Family f, std::string key, std::string value) {
    ops_.push_back({OpType::kPut, f, std::move(key), std::move(value)});
  }
  void Delete(Family f, std::string key) { ops_.push_back({OpType::kDelete, f, std::move(key), {}}); }
  // Only for Family::kStats (the only family with a merge operator).
  void Merge(Family f, std::string key, std::string operand) {
    ops_.push_back({OpType::kMerge, f, std::move(key), std::move(operand)});
  }
  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  size_t ByteSize() const {
    size_t n = 0;
    for (const auto& op : ops_) n += op.key.size() + op.value.size();
    return n;
  }

 private:
  std::vector<Op> ops_;
};

class Store {
 public:
  virtual ~Store() = default;
  // The value, or nullopt when absent. For kStats, the fully merged value.
  virtual absl::StatusOr<std::optional<std::string>> Get(Family f, const std::string& key) = 0;
  // Applies the batch atomically, ops in order. INVALID_ARGUMENT for a Merge outside
  // kStats or a kStats value that fails the checks above (nothing applied then).
  virtual absl::Status Write(const WriteBatch& batch) = 0;
  // Visits keys starting with `prefix` in order until `fn` returns false. `fn` sees
  // a consistent snapshot and may call back into the store.
  virtual absl::Status Scan(Family f, const std::string& prefix,
                            const std::function<bool(const std::string& key,
                                                     const std::string& value)>& fn) = 0;
  // Approximate bytes on disk (0 for in-memory stores); for metrics.
  virtual int64_t ApproximateSizeBytes() { return 0; }

  // Disk space (issue 15). Free bytes on the volume holding the store, for
  // unprivileged writers (statvfs f_bavail); nullopt for a store without a volume.
  virtual std::optional<int64_t> FreeBytes() { return std::nullopt; }
  // Where the store lives, for messages ("/var/lib/qcal/db", "memory").
  virtual std::string Location() { return "memory"; }
  // After a write failed for lack of space or an I/O error, a store may stop taking
  // writes (each Write then fails at once, with RESOURCE_EXHAUSTED or UNAVAILABLE,
  // naming the first failure) until ResumeWrites succeeds. RocksDB's log writer must
  // not be written again after such an error (its next append aborts the process),
  // so RocksDbStore reopens the database to resume.
  virtual bool WritesSuspended() { return false; }
  virtual absl::Status ResumeWrites() { return absl::OkStatus(); }
};

// Merges serialized LinearStatsProto values: `existing` (may be null) then
// `operands` in order. Used by every Store implementation, so all of them merge
// identically. INVALID_ARGUMENT when a value is corrupt or the channels differ.
absl::StatusOr<std::string> MergeLinearStats(const std::string* existing,
                                             const std::vector<std::string>& operands);

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_STORE_H_
