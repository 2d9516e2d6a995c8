// FaultInjectingStore: wraps any Store and fails calls on demand, for tests of the
// code above the store ("a crash mid-report changes nothing"). An injected failure
// never reaches the wrapped store (except LoseNextWriteAcks, which is the point of
// it), so the wrapped store shows exactly what a real crash would have left.
//
// Faults (all cleared by Heal(); counters are not):
//   FailNextWrites(n) / FailNextReads(n): the next n Writes / reads (Get and Scan)
//     fail with `status`.
//   CrashAfterWrites(n): n more Writes succeed; the one after fails, and from then
//     on every call fails with UNAVAILABLE ("crashed") until Heal(). Crash() does so
//     at once.
//   FailWritesTouching(f): every Write whose batch has an op on family f fails.
//   LoseNextWriteAcks(n): the next n Writes are applied, then reported as
//     UNAVAILABLE (the reply was lost: the caller must cope with a retry).
// Checks run in that order: crashed, crash countdown, next-write failures, family,
// then the call goes through.
//
// Thread-safety: all methods may be called concurrently. `base` is not owned and
// must outlive this object.
#ifndef QCAL_SERVER_STORE_FAULT_INJECTING_STORE_H_
#define QCAL_SERVER_STORE_FAULT_INJECTING_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/store/store.h"

namespace qcal::server {

class FaultInjectingStore : public Store {
 public:
  // Calls seen, whether they failed or not, and how many failed by injection.
  struct Counts {
    int64_t gets = 0;
    int64_t scans = 0;
    int64_t writes = 0;
    int64_t injected_failures = 0;  // calls failed here (lost acks included)
  };

  explicit FaultInjectingStore(Store* base);

  absl::StatusOr<std::optional<std::string>> Get(Family f,
                                                 const std::string& key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::Status Scan(Family f, const std::string& prefix,
                    const std::function<bool(const std::string& key,
                                             const std::string& value)>& fn) override;
  int64_t ApproximateSizeBytes() override { return base_->ApproximateSizeBytes(); }
  // The injected free space when set (SetFreeBytes), else the base store's.
  std::optional<int64_t> FreeBytes() override;
  std::string Location() override { return base_->Location(); }
  bool WritesSuspended() override { return base_->WritesSuspended(); }
  absl::Status ResumeWrites() override { return base_->ResumeWrites(); }

  // Makes FreeBytes report `bytes` (nullopt: the base store's again).
  void SetFreeBytes(std::optional<int64_t> bytes);

  void FailNextWrites(int n, absl::Status status = DefaultError());
  void FailNextReads(int n, absl::Status status = DefaultError());
  void CrashAfterWrites(int n);
  void Crash();
  void FailWritesTouching(Family f);
  void LoseNextWriteAcks(int n);
  // Clears every fault above.
  void Heal();

  bool crashed() const;
  Counts counts() const;
  void ResetCounts();

  // UNAVAILABLE "injected store failure".
  static absl::Status DefaultError();

 private:
  // The failure for a read now, or OK (counts it).
  absl::Status ReadFault() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const base_;
  mutable absl::Mutex mu_;
  Counts counts_ ABSL_GUARDED_BY(mu_);
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<int> writes_before_crash_ ABSL_GUARDED_BY(mu_);
  int fail_writes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status write_error_ ABSL_GUARDED_BY(mu_);
  int fail_reads_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status read_error_ ABSL_GUARDED_BY(mu_);
  bool fail_family_[kNumFamilies] ABSL_GUARDED_BY(mu_) = {};
  int lose_acks_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<int64_t> free_bytes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_FAULT_INJECTING_STORE_H_
