// Internal to qcal_store: the RocksDB MergeOperator of the stats column family.
// Both merge kinds call MergeLinearStatsViews, so RocksDB merges exactly like
// InMemoryStore.
//
// Failure handling: a FullMergeV2 error returns false, so RocksDB reports
// Corruption to the reader (or fails the compaction) instead of crashing; the error
// is logged to RocksDB's LOG and stderr and kept for the failing thread
// (TakeLastMergeError) so Get can say what was wrong. A PartialMergeMulti error also
// returns false, which only leaves the operands unmerged (the full merge reports it).
//
// Thread-safety: RocksDB calls it from any thread; all state is atomic or
// thread-local.
#ifndef QCAL_SERVER_STORE_LINEAR_STATS_MERGE_OPERATOR_H_
#define QCAL_SERVER_STORE_LINEAR_STATS_MERGE_OPERATOR_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>

#include "rocksdb/merge_operator.h"

namespace qcal::server {

class LinearStatsMergeOperator : public rocksdb::MergeOperator {
 public:
  struct Counters {
    uint64_t full_merges = 0;     // successful FullMergeV2 calls
    uint64_t partial_merges = 0;  // successful PartialMergeMulti calls
    uint64_t failures = 0;        // failed calls of either kind
  };

  bool FullMergeV2(const MergeOperationInput& merge_in,
                   MergeOperationOutput* merge_out) const override;
  bool PartialMergeMulti(const rocksdb::Slice& key,
                         const std::deque<rocksdb::Slice>& operand_list,
                         std::string* new_value, rocksdb::Logger* logger) const override;
  // Persisted in the OPTIONS file; change it only with the schema version.
  const char* Name() const override { return "qcal.LinearStatsMerge.v1"; }

  Counters counters() const;

  // The message of the last failed merge on the calling thread, then clears it
  // ("" when none failed since the last call).
  static std::string TakeLastMergeError();

 private:
  void ReportFailure(const char* kind, const rocksdb::Slice& key,
                     const std::string& message, rocksdb::Logger* logger) const;

  mutable std::atomic<uint64_t> full_merges_{0};
  mutable std::atomic<uint64_t> partial_merges_{0};
  mutable std::atomic<uint64_t> failures_{0};
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_LINEAR_STATS_MERGE_OPERATOR_H_
