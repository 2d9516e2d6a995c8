#include "server/store/rocksdb_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "server/store/write_checks.h"

namespace qcal::server {
namespace {

// More cached kStats shapes than this and the cache starts over (a miss costs one
// Get); bounds memory over many jobs.
constexpr size_t kMaxCachedShapes = 1 << 16;

// Converts a RocksDB status; the message names the directory and the operation.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view dir,
                       absl::string_view what, absl::string_view detail = "") {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("rocksdb store ", dir, ": ", what, ": ", s.ToString());
  if (!detail.empty()) absl::StrAppend(&msg, " (", detail, ")");
  using C = rocksdb::Status::Code;
  switch (s.code()) {
    case C::kNotFound:
      return absl::NotFoundError(msg);
    case C::kCorruption:
      return absl::DataLossError(msg);
    case C::kNotSupported:
      return absl::UnimplementedError(msg);
    case C::kInvalidArgument:
      return absl::InvalidArgumentError(msg);
    case C::kIOError:
      if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
      return absl::InternalError(msg);
    case C::kTimedOut:
      return absl::DeadlineExceededError(msg);
    case C::kAborted:
      return absl::AbortedError(msg);
    case C::kShutdownInProgress:
    case C::kBusy:
    case C::kExpired:
    case C::kTryAgain:
      return absl::UnavailableError(msg);
    case C::kCompactionTooLarge:
      return absl::ResourceExhaustedError(msg);
    case C::kColumnFamilyDropped:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// True for RocksDB's "LOCK file held" errors (PosixFileSystem::LockFile): "While
// lock file: <dir>/LOCK: Resource temporarily unavailable" when another process
// holds it, "lock hold by current process ..." when another DB in this one does.
// (Matching the exact phrases, not "lock" anywhere: a path may contain "blocks".)
bool IsLockError(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  const std::string msg = s.ToString();
  return absl::StrContains(msg, "While lock file") ||
         absl::StrContains(msg, "lock hold by current process");
}

// The smallest string greater than every string starting with `prefix`; false when
// there is none (prefix empty or all 0xff).
bool PrefixSuccessor(const std::string& prefix, std::string* out) {
  *out = prefix;
  while (!out->empty() && static_cast<unsigned char>(out->back()) == 0xff)
    out->pop_back();
  if (out->empty()) return false;
  out->back() = static_cast<char>(static_cast<unsigned char>(out->back()) + 1);
  return true;
}

std::string WithMergeError(absl::string_view what) {
  std::string merge_error = LinearStatsMergeOperator::TakeLastMergeError();
  if (merge_error.empty()) return std::string(what);
  return absl::StrCat(what, " [", merge_error, "]");
}

}  // namespace

// RocksDB's info log, written by qcal instead of RocksDB's file logger. That one
// writes <dir>/LOG on the database volume, and after its first failed append on a
// full disk the next line it logs (the error handler logs the write error) aborts
// the process: Debian's librocksdb 7.8 keeps the assertion in writable_file_writer.h
// ("sync_without_flush_called_"). This logger never touches the volume: warnings and
// errors go to stderr, and what the log replay reports (corrupt records, bytes
// dropped) is also kept for recovery_notes().
class RocksLogger final : public rocksdb::Logger {
 public:
  explicit RocksLogger(std::string dir) : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), dir_(std::move(dir)) {}

  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[2048];
    const int n = std::vsnprintf(buf, sizeof(buf), format, ap);
    if (n < 0) return;
    const std::string line(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
    std::fprintf(stderr, "rocksdb %s: %s\n", dir_.c_str(), line.c_str());
    if (absl::StrContains(line, "dropping") || absl::StrContains(line, "Corruption")) {
      absl::MutexLock lock(&mu_);
      if (notes_.size() < 100) notes_.push_back(line);
    }
  }
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }

  std::vector<std::string> TakeNotes() {
    absl::MutexLock lock(&mu_);
    return std::exchange(notes_, {});
  }

 private:
  const std::string dir_;
  absl::Mutex mu_;
  std::vector<std::string> notes_ ABSL_GUARDED_BY(mu_);
};


RocksDbStore::RocksDbStore(std::string dir, const RocksDbOptions& options)
    : dir_(std::move(dir)),
      options_(options),
      sync_writes_(options.sync_writes),
      merge_operator_(std::make_shared<LinearStatsMergeOperator>()) {}

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(
    const std::string& dir, const RocksDbOptions& options) {
  if (dir.empty()) return absl::InvalidArgumentError("rocksdb store: empty directory");
  std::error_code ec;
  if (options.create_if_missing) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rocksdb store ", dir, ": cannot create the directory: ", ec.message()));
    }
  } else if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
    return absl::NotFoundError(absl::StrCat(
        "rocksdb store ", dir, ": no database there (create_if_missing is off)"));
  }

  auto store = absl::WrapUnique(new RocksDbStore(dir, options));
  QCAL_RETURN_IF_ERROR(store->OpenDb(options.wal_recovery == RocksDbOptions::WalRecovery::kStrict));
  QCAL_RETURN_IF_ERROR(store->InitSchema());
  return store;
}

absl::Status RocksDbStore::OpenDb(bool strict) {
  const RocksDbOptions& options = options_;
  const std::string& dir = dir_;
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = std::max(1, options.max_background_jobs);
  db_options.keep_log_file_num = 10;
  // The small families (jobs, tasks, shards) rarely fill a memtable, so without a cap
  // they pin every write-ahead log file: 40 7B-sized reports left 2.4 GB of logs and a
  // 38 s restart in the load test. The cap makes RocksDB flush them instead.
  db_options.max_total_wal_size = 256ull << 20;
  // RocksDB's default (point in time) replays up to the first corrupt record and
  // silently drops the rest: a flipped byte lost half a job. Strict replay tolerates
  // only a torn last record, which was never acknowledged.
  db_options.wal_recovery_mode = strict ? rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords
                                        : rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // Closing after a failed write (ResumeWrites) must not write more than it must.
  db_options.avoid_flush_during_shutdown = true;
  if (logger_ == nullptr) logger_ = std::make_shared<RocksLogger>(dir_);
  db_options.info_log = logger_;
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(options.block_cache_mb << 20);
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (int i = 0; i < kNumFamilies; ++i) {
    const Family f = static_cast<Family>(i);
    rocksdb::ColumnFamilyOptions family_options = cf_options;
    if (f == Family::kStats) {
      family_options.merge_operator = merge_operator_;
      // Statistics are mostly random floats: compression costs CPU and saves ~3 %.
      family_options.compression = rocksdb::kNoCompression;
      // Large memtables, merged together before a flush, fold many reports' operands
      // per linear into one value before anything reaches a table file.
      family_options.write_buffer_size = static_cast<size_t>(options.stats_write_buffer_mb) << 20;
      family_options.max_write_buffer_number = 3;
      family_options.min_write_buffer_number_to_merge = 2;
    }
    descriptors.emplace_back(FamilyName(f), family_options);
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw_db);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return absl::UnavailableError(
          absl::StrCat("rocksdb store ", dir,
                       ": the database is locked by another process or store "
                       "(is another qcal-coordinator running on this directory?): ",
                       s.ToString()));
    }
    if (s.IsInvalidArgument() &&
        absl::StrContains(s.ToString(), "Column families not opened")) {
      return absl::FailedPreconditionError(
          absl::StrCat("rocksdb store ", dir,
                       ": the database has column families this build does not "
                       "know (written by a newer qcal?): ",
                       s.ToString()));
    }
    // The status says what, the replay's log lines say where (which log file).
    const std::vector<std::string> notes = logger_->TakeNotes();
    return FromRocks(s, dir, "open", notes.empty() ? "" : notes.front());
  }
  db_.reset(raw_db);
  default_handle_ = handles[0];
  for (int i = 0; i < kNumFamilies; ++i) handles_[i] = handles[i + 1];
  recovery_notes_ = logger_->TakeNotes();
  return absl::OkStatus();
}


RocksDbStore::~RocksDbStore() { CloseDb(); }

void RocksDbStore::CloseDb() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle*& h : handles_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    h = nullptr;
  }
  if (default_handle_ != nullptr) {
    db_->DestroyColumnFamilyHandle(default_handle_).PermitUncheckedError();
    default_handle_ = nullptr;
  }
  db_->Close().PermitUncheckedError();
  db_.reset();
}

std::optional<int64_t> RocksDbStore::FreeBytes() {
  struct statvfs st;
  if (::statvfs(dir_.c_str(), &st) != 0) return std::nullopt;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

absl::Status RocksDbStore::SuspendedError() const {
  absl::MutexLock lock(&suspend_mu_);
  return absl::Status(suspend_reason_.code(),
                      absl::StrCat("rocksdb store ", dir_,
                                   ": writes are suspended since a write failed (",
                                   suspend_reason_.message(),
                                   "); they resume once space is freed on the volume"));
}

absl::Status RocksDbStore::ResumeWrites() {
  if (!suspended_.load()) return absl::OkStatus();
  {
    // New calls fail fast (UNAVAILABLE) from here on, and the ones in flight end.
    absl::MutexLock lock(&use_mu_);
    if (reopening_) return absl::UnavailableError("rocksdb store: already reopening");
    reopening_ = true;
    use_mu_.Await(absl::Condition(
        +[](int* users) { return *users == 0; }, &users_));
  }
  CloseDb();
  absl::Status opened = OpenDb(/*strict=*/true);
  absl::MutexLock lock(&use_mu_);
  reopening_ = false;
  if (!opened.ok()) return opened;  // still suspended; every call fails until a reopen works
  {
    absl::MutexLock stats(&stats_mu_);
    shape_cache_.clear();
  }
  suspended_ = false;
  return absl::OkStatus();
}

absl::StatusOr<std::array<int64_t, kNumFamilies>> RocksDbStore::Verify() {
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = true;
  read_options.fill_cache = false;
  const rocksdb::Status tables = db_->VerifyChecksum(read_options);
  if (!tables.ok()) {
    return absl::DataLossError(absl::StrCat("rocksdb store ", dir_, ": verify table files: ",
                                            tables.ToString()));
  }
  std::array<int64_t, kNumFamilies> records{};
  for (int i = 0; i < kNumFamilies; ++i) {
    LinearStatsMergeOperator::TakeLastMergeError();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, handles_[i]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++records[i];
    if (!it->status().ok()) {
      return absl::DataLossError(
          absl::StrCat("rocksdb store ", dir_, ": verify ", FamilyName(static_cast<Family>(i)),
                       " after ", records[i], " records: ",
                       WithMergeError(it->status().ToString())));
    }
  }
  return records;
}

absl::Status RocksDbStore::InitSchema() {
  QCAL_ASSIGN_OR_RETURN(std::optional<std::string> version,
                        GetLocked(Family::kMeta, kSchemaVersionKey));
  if (version.has_value()) {
    int v = 0;
    if (!absl::SimpleAtoi(*version, &v) || v < kOldestSchemaVersion || v > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rocksdb store ", dir_, ": schema version '", absl::CHexEscape(*version),
          "' is not one this build reads (", kOldestSchemaVersion, " to ", kSchemaVersion,
          "; a newer qcal wrote it?)"));
    }
    return absl::OkStatus();
  }
  // No version: a new database (or one whose creation was interrupted before the
  // version was written) must be empty; anything else is not ours.
  for (int i = 0; i < kNumFamilies; ++i) {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), handles_[i]));
    it->SeekToFirst();
    if (it->Valid()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rocksdb store ", dir_, ": the database holds data but no schema version (",
          FamilyName(static_cast<Family>(i)), " is not empty): not a qcal store"));
    }
    QCAL_RETURN_IF_ERROR(FromRocks(it->status(), dir_, "schema check"));
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  return FromRocks(db_->Put(write_options, Handle(Family::kMeta), kSchemaVersionKey,
                            std::to_string(kSchemaVersion)),
                   dir_, "write schema version");
}

rocksdb::ColumnFamilyHandle* RocksDbStore::Handle(Family f) const {
  return handles_[static_cast<size_t>(f)];
}

absl::StatusOr<RocksDbStore::DbUse> RocksDbStore::EnterDb() {
  absl::MutexLock lock(&use_mu_);
  if (reopening_ || db_ == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "rocksdb store ", dir_, ": the database is ",
        reopening_ ? "being reopened after a failed write; retry"
                   : "closed: reopening it after a failed write did not work yet (is the "
                     "volume still full?)"));
  }
  ++users_;
  return DbUse(this);
}

void RocksDbStore::LeaveDb() {
  absl::MutexLock lock(&use_mu_);
  --users_;
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(Family f,
                                                             const std::string& key) {
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  return GetLocked(f, key);
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::GetLocked(Family f,
                                                                   const std::string& key) {
  if (db_ == nullptr) return absl::UnavailableError(absl::StrCat("rocksdb store ", dir_, ": closed"));
  if (!IsValidFamily(f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("get: unknown family ", static_cast<int>(f)));
  }
  rocksdb::PinnableSlice value;
  LinearStatsMergeOperator::TakeLastMergeError();
  const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Handle(f), key, &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) {
    return FromRocks(s, dir_, WithMergeError(absl::StrCat("get ", DescribeKey(f, key))));
  }
  return std::string(value.data(), value.size());
}

absl::Status RocksDbStore::Commit(const WriteBatch& batch) {
  rocksdb::WriteBatch wb;
  for (const WriteBatch::Op& op : batch.ops()) {
    rocksdb::Status s;
    switch (op.type) {
      case WriteBatch::OpType::kPut:
        s = wb.Put(Handle(op.family), op.key, op.value);
        break;
      case WriteBatch::OpType::kDelete:
        s = wb.Delete(Handle(op.family), op.key);
        break;
      case WriteBatch::OpType::kMerge:
        s = wb.Merge(Handle(op.family), op.key, op.value);
        break;
    }
    QCAL_RETURN_IF_ERROR(FromRocks(s, dir_, "build write batch"));
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = sync_writes_;
  // One write at a time reaches RocksDB (its own write queue serializes them too),
  // so none follows a failed one into the log writer before the suspension is seen.
  absl::MutexLock commit(&commit_mu_);
  if (suspended_.load()) return SuspendedError();
  const rocksdb::Status s = db_->Write(write_options, &wb);
  if (s.IsIOError()) {
    // The log writer saw the error: nothing may append to it again (see header).
    absl::MutexLock lock(&suspend_mu_);
    suspend_reason_ = FromRocks(s, dir_, "write");
    suspended_ = true;
    return suspend_reason_;
  }
  return FromRocks(s, dir_, "write");
}

absl::StatusOr<RocksDbStore::ShapeEntry> RocksDbStore::CurrentShape(
    const std::string& key) {
  if (auto it = shape_cache_.find(key); it != shape_cache_.end()) return it->second;
  QCAL_ASSIGN_OR_RETURN(std::optional<std::string> value, GetLocked(Family::kStats, key));
  ShapeEntry shape;
  if (value.has_value()) {
    absl::StatusOr<LinearStatsShape> parsed = ValidateLinearStats(*value);
    if (!parsed.ok()) {
      return absl::DataLossError(absl::StrCat("rocksdb store ", dir_, ": stored ",
                                              DescribeKey(Family::kStats, key), ": ",
                                              parsed.status().message()));
    }
    shape = *std::move(parsed);
  }
  if (shape_cache_.size() >= kMaxCachedShapes) shape_cache_.clear();
  shape_cache_[key] = shape;
  return shape;
}

absl::Status RocksDbStore::Write(const WriteBatch& batch) {
  QCAL_RETURN_IF_ERROR(CheckBatchStructure(batch));
  if (suspended_.load()) return SuspendedError();
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  const bool touches_stats =
      std::any_of(batch.ops().begin(), batch.ops().end(),
                  [](const WriteBatch::Op& op) { return op.family == Family::kStats; });
  if (!touches_stats) return Commit(batch);

  absl::MutexLock lock(&stats_mu_);
  // The shape each touched key will have once the batch is applied.
  absl::flat_hash_map<std::string, ShapeEntry> staged;
  for (const WriteBatch::Op& op : batch.ops()) {
    if (op.family != Family::kStats) continue;
    if (op.type == WriteBatch::OpType::kDelete) {
      staged[op.key] = std::nullopt;
      continue;
    }
    absl::StatusOr<LinearStatsShape> shape = ValidateLinearStats(op.value);
    if (!shape.ok()) return AnnotateKey(op.family, op.key, shape.status());
    if (op.type == WriteBatch::OpType::kMerge) {
      ShapeEntry current;
      if (auto it = staged.find(op.key); it != staged.end()) {
        current = it->second;
      } else {
        QCAL_ASSIGN_OR_RETURN(current, CurrentShape(op.key));
      }
      if (current.has_value()) {
        QCAL_RETURN_IF_ERROR(CheckSameShape(op.family, op.key, *current, *shape));
      }
    }
    staged[op.key] = *std::move(shape);
  }
  QCAL_RETURN_IF_ERROR(Commit(batch));
  if (shape_cache_.size() + staged.size() > kMaxCachedShapes) shape_cache_.clear();
  for (auto& [key, shape] : staged) shape_cache_[key] = std::move(shape);
  return absl::OkStatus();
}

absl::Status RocksDbStore::WriteUncheckedForTesting(const WriteBatch& batch) {
  QCAL_RETURN_IF_ERROR(CheckBatchStructure(batch));
  if (suspended_.load()) return SuspendedError();
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  absl::MutexLock lock(&stats_mu_);
  shape_cache_.clear();
  return Commit(batch);
}

absl::Status RocksDbStore::Scan(
    Family f, const std::string& prefix,
    const std::function<bool(const std::string& key, const std::string& value)>& fn) {
  if (!IsValidFamily(f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scan: unknown family ", static_cast<int>(f)));
  }
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  rocksdb::ReadOptions read_options;
  std::string upper;
  rocksdb::Slice upper_slice;
  if (PrefixSuccessor(prefix, &upper)) {
    upper_slice = rocksdb::Slice(upper);
    read_options.iterate_upper_bound = &upper_slice;
  }
  LinearStatsMergeOperator::TakeLastMergeError();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, Handle(f)));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    if (!it->key().starts_with(prefix)) break;
    if (!fn(it->key().ToString(), it->value().ToString())) break;
  }
  if (!it->status().ok()) {
    return FromRocks(
        it->status(), dir_,
        WithMergeError(absl::StrCat("scan ", DescribeKey(f, prefix), " (prefix)")));
  }
  return absl::OkStatus();
}

int64_t RocksDbStore::ApproximateSizeBytes() {
  absl::StatusOr<DbUse> use = EnterDb();
  if (!use.ok()) return 0;
  uint64_t sst = 0;
  uint64_t mem = 0;
  db_->GetAggregatedIntProperty("rocksdb.total-sst-files-size", &sst);
  db_->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
  return static_cast<int64_t>(sst + mem);
}

absl::Status RocksDbStore::Flush() {
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  std::vector<rocksdb::ColumnFamilyHandle*> handles(handles_.begin(), handles_.end());
  return FromRocks(db_->Flush(rocksdb::FlushOptions(), handles), dir_, "flush");
}

absl::Status RocksDbStore::CompactAll() {
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  QCAL_ASSIGN_OR_RETURN(DbUse use, EnterDb());
  for (int i = 0; i < kNumFamilies; ++i) {
    LinearStatsMergeOperator::TakeLastMergeError();
    const rocksdb::Status s = db_->CompactRange(options, handles_[i], nullptr, nullptr);
    if (!s.ok()) {
      return FromRocks(
          s, dir_,
          WithMergeError(absl::StrCat("compact ", FamilyName(static_cast<Family>(i)))));
    }
  }
  return absl::OkStatus();
}

LinearStatsMergeOperator::Counters RocksDbStore::merge_counters() const {
  return merge_operator_->counters();
}

}  // namespace qcal::server
