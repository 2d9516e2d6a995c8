#include "server/store/linear_stats_merge_operator.h"

#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "rocksdb/env.h"
#include "server/store/stats_merge.h"
#include "server/store/store.h"
#include "server/store/write_checks.h"

namespace qcal::server {
namespace {

thread_local std::string last_merge_error;

// Failures beyond this many are only written to RocksDB's LOG, not to stderr (a
// reader polling a corrupt key must not flood the console).
constexpr uint64_t kMaxStderrReports = 100;

absl::string_view View(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

}  // namespace

bool LinearStatsMergeOperator::FullMergeV2(const MergeOperationInput& merge_in,
                                           MergeOperationOutput* merge_out) const {
  std::vector<absl::string_view> operands;
  operands.reserve(merge_in.operand_list.size());
  for (const rocksdb::Slice& s : merge_in.operand_list) operands.push_back(View(s));
  absl::string_view existing;
  if (merge_in.existing_value != nullptr) existing = View(*merge_in.existing_value);
  absl::StatusOr<std::string> merged = MergeLinearStatsViews(
      merge_in.existing_value != nullptr ? &existing : nullptr, operands);
  if (!merged.ok()) {
    ReportFailure("full merge", merge_in.key, std::string(merged.status().message()),
                  merge_in.logger);
    return false;
  }
  merge_out->new_value = *std::move(merged);
  full_merges_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool LinearStatsMergeOperator::PartialMergeMulti(
    const rocksdb::Slice& key, const std::deque<rocksdb::Slice>& operand_list,
    std::string* new_value, rocksdb::Logger* logger) const {
  std::vector<absl::string_view> operands;
  operands.reserve(operand_list.size());
  for (const rocksdb::Slice& s : operand_list) operands.push_back(View(s));
  absl::StatusOr<std::string> merged = MergeLinearStatsViews(nullptr, operands);
  if (!merged.ok()) {
    ReportFailure("partial merge", key, std::string(merged.status().message()), logger);
    return false;
  }
  *new_value = *std::move(merged);
  partial_merges_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

LinearStatsMergeOperator::Counters LinearStatsMergeOperator::counters() const {
  Counters c;
  c.full_merges = full_merges_.load(std::memory_order_relaxed);
  c.partial_merges = partial_merges_.load(std::memory_order_relaxed);
  c.failures = failures_.load(std::memory_order_relaxed);
  return c;
}

std::string LinearStatsMergeOperator::TakeLastMergeError() {
  return std::exchange(last_merge_error, std::string());
}

void LinearStatsMergeOperator::ReportFailure(const char* kind, const rocksdb::Slice& key,
                                             const std::string& message,
                                             rocksdb::Logger* logger) const {
  const uint64_t n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  last_merge_error = absl::StrCat(kind, " of ", DescribeKey(Family::kStats, View(key)),
                                  " failed: ", message);
  if (logger != nullptr) {
    rocksdb::Log(rocksdb::InfoLogLevel::ERROR_LEVEL, logger, "qcal: %s",
                 last_merge_error.c_str());
  }
  if (n <= kMaxStderrReports) {
    std::cerr << "qcal store: " << last_merge_error
              << (n == kMaxStderrReports
                      ? " (further merge failures only in RocksDB's LOG)"
                      : "")
              << "\n";
  }
}

}  // namespace qcal::server
