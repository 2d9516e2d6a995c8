#include "server/store/fault_injecting_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace qcal::server {
namespace {

absl::Status CrashedError() {
  return absl::UnavailableError("injected store failure: store crashed (call Heal())");
}

}  // namespace

FaultInjectingStore::FaultInjectingStore(Store* base) : base_(base) {}

absl::Status FaultInjectingStore::DefaultError() {
  return absl::UnavailableError("injected store failure");
}

absl::Status FaultInjectingStore::ReadFault() {
  if (crashed_) {
    ++counts_.injected_failures;
    return CrashedError();
  }
  if (fail_reads_ > 0) {
    --fail_reads_;
    ++counts_.injected_failures;
    return read_error_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> FaultInjectingStore::Get(
    Family f, const std::string& key) {
  {
    absl::MutexLock lock(&mu_);
    ++counts_.gets;
    if (absl::Status s = ReadFault(); !s.ok()) return s;
  }
  return base_->Get(f, key);
}

absl::Status FaultInjectingStore::Scan(
    Family f, const std::string& prefix,
    const std::function<bool(const std::string& key, const std::string& value)>& fn) {
  {
    absl::MutexLock lock(&mu_);
    ++counts_.scans;
    if (absl::Status s = ReadFault(); !s.ok()) return s;
  }
  return base_->Scan(f, prefix, fn);
}

absl::Status FaultInjectingStore::Write(const WriteBatch& batch) {
  bool lose_ack = false;
  {
    absl::MutexLock lock(&mu_);
    ++counts_.writes;
    if (!crashed_ && writes_before_crash_.has_value()) {
      if (*writes_before_crash_ == 0) {
        crashed_ = true;
        writes_before_crash_.reset();
      } else {
        --*writes_before_crash_;
      }
    }
    if (crashed_) {
      ++counts_.injected_failures;
      return CrashedError();
    }
    if (fail_writes_ > 0) {
      --fail_writes_;
      ++counts_.injected_failures;
      return write_error_;
    }
    for (const WriteBatch::Op& op : batch.ops()) {
      if (IsValidFamily(op.family) && fail_family_[static_cast<int>(op.family)]) {
        ++counts_.injected_failures;
        return absl::UnavailableError(absl::StrCat(
            "injected store failure: write touches family ", FamilyName(op.family)));
      }
    }
    if (lose_acks_ > 0) {
      --lose_acks_;
      lose_ack = true;
    }
  }
  absl::Status s = base_->Write(batch);
  if (!lose_ack || !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  ++counts_.injected_failures;
  return absl::UnavailableError(
      "injected store failure: write applied but its ack was lost");
}

void FaultInjectingStore::FailNextWrites(int n, absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_writes_ = n;
  write_error_ = status.ok() ? DefaultError() : std::move(status);
}

void FaultInjectingStore::FailNextReads(int n, absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_reads_ = n;
  read_error_ = status.ok() ? DefaultError() : std::move(status);
}

void FaultInjectingStore::CrashAfterWrites(int n) {
  absl::MutexLock lock(&mu_);
  writes_before_crash_ = n < 0 ? 0 : n;
}

void FaultInjectingStore::Crash() {
  absl::MutexLock lock(&mu_);
  crashed_ = true;
  writes_before_crash_.reset();
}

void FaultInjectingStore::FailWritesTouching(Family f) {
  absl::MutexLock lock(&mu_);
  if (IsValidFamily(f)) fail_family_[static_cast<int>(f)] = true;
}

void FaultInjectingStore::LoseNextWriteAcks(int n) {
  absl::MutexLock lock(&mu_);
  lose_acks_ = n;
}

std::optional<int64_t> FaultInjectingStore::FreeBytes() {
  {
    absl::MutexLock lock(&mu_);
    if (free_bytes_.has_value()) return free_bytes_;
  }
  return base_->FreeBytes();
}

void FaultInjectingStore::SetFreeBytes(std::optional<int64_t> bytes) {
  absl::MutexLock lock(&mu_);
  free_bytes_ = bytes;
}

void FaultInjectingStore::Heal() {
  absl::MutexLock lock(&mu_);
  crashed_ = false;
  writes_before_crash_.reset();
  fail_writes_ = 0;
  fail_reads_ = 0;
  for (bool& b : fail_family_) b = false;
  lose_acks_ = 0;
}

bool FaultInjectingStore::crashed() const {
  absl::MutexLock lock(&mu_);
  return crashed_;
}

FaultInjectingStore::Counts FaultInjectingStore::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

void FaultInjectingStore::ResetCounts() {
  absl::MutexLock lock(&mu_);
  counts_ = Counts();
}

}  // namespace qcal::server
