// The kinds of work the coordinator leases (calibrate, evaluate, export, ...): one
// WorkKind per JobKind, each in its own file under server/core/kinds/. A kind says
// how its tasks are filled, how a report is checked and applied, how the work
// finishes and what its operation shows; leasing, heartbeats, expiry, exactly-once
// accounting and restart recovery (coordinator.h) are written once for all kinds
// and never ask which kind they hold.
//
// Every kind's work is a JobRecord whose shards are its units. A calibration job
// ends JOB_CALIBRATED; an operation's work (evaluations, exports) ends
// JOB_SUCCEEDED, and its OperationRecord is kept in step on every write.
//
// Adding a kind: a JobKind value, a file in kinds/ defining a WorkKind, one line in
// work_kind.cc's table. Nothing else switches on the kind.
//
// Thread-safety: kinds are stateless singletons; every method is const and may run
// with or without the coordinator's lock (those that take a record run under it).
#ifndef QCAL_SERVER_CORE_WORK_KIND_H_
#define QCAL_SERVER_CORE_WORK_KIND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/any.pb.h"
#include "proto/qcal/v1/coordinator_state.pb.h"
#include "proto/qcal/v1/worker.pb.h"

namespace qcal::server {

// What a report must match, copied from the record under the lock so that the
// report can be checked without it.
struct ReportLayout {
  std::string task_id;
  int64_t samples = 0;  // samples of the task's shards
  int64_t units = 0;    // shards of the task
  int64_t tokens_per_sample = 0;  // WorkKind::TokensPerSample
  // Linears in forward order with their widths (kinds that report statistics).
  std::vector<std::string> names;
  std::vector<int64_t> in, out;
};

// A report that passed its kind's checks, ready to be applied in one batch.
struct CheckedReport {
  // Merge operands of the job's statistics, one per linear in forward order
  // (empty for kinds without statistics).
  std::vector<std::string> stats_operands;
  // Per shard of the task, what ShardRecord.result keeps (empty: nothing).
  std::vector<std::string> unit_results;
  // The kind's own result (serialized), read again by Finish.
  std::string result;
  int64_t bytes = 0;
};

class WorkKind {
 public:
  virtual ~WorkKind() = default;

  virtual v1::JobKind kind() const = 0;
  // "calibration", "evaluation", "export": for messages.
  virtual const char* noun() const = 0;
  // False for calibration jobs; true for work that is a long-running operation.
  virtual bool is_operation() const = 0;
  // Whether an idle worker may run a straggler's task again (a backup lease).
  virtual bool allows_backups() const { return true; }
  // Whether a task of this kind may read its parent job's statistics
  // (GetTaskStats).
  virtual bool reads_parent_stats() const { return false; }
  // Whether reports carry statistics (ReportLayout.names is then filled).
  virtual bool reports_statistics() const { return false; }

  // Whether shard `next` may join a task that starts at shard `first`.
  virtual bool SameTask(const v1::JobRecord& r, int64_t first, int64_t next) const = 0;
  // Samples that shards [begin, end) cover (what their report must count).
  virtual int64_t SamplesOfShards(const v1::JobRecord& r, int64_t begin, int64_t end) const = 0;
  // Tokens one sample of this work holds at most (its sampling's seq_len; 0 for
  // work without samples): bounds the counts a report may claim.
  virtual int64_t TokensPerSample(const v1::JobRecord& r) const = 0;
  // The kind-specific part of a leased task: kind, samples, sampling, payload.
  // The caller has filled ids, lease, model, corpus, shards and batch size.
  virtual void FillTask(const v1::JobRecord& r, int64_t begin, int64_t end,
                        v1::Task* task) const = 0;
  // Checks a whole report (no lock held); INVALID_ARGUMENT names what is wrong.
  virtual absl::StatusOr<CheckedReport> CheckReport(
      const ReportLayout& layout, const v1::CompleteTaskHeader& header,
      const std::vector<v1::LinearStatsProto>& linears,
      const google::protobuf::Any* result) const = 0;
  // Called when the last shard is done, with that shard's report; fills the
  // record's result. An error fails the work with its message.
  virtual absl::Status Finish(v1::JobRecord& r, const std::vector<v1::ShardRecord>& shards,
                              const CheckedReport& last) const = 0;
  // Operations only: the operation's metadata and, once the work succeeded, its
  // response (the caller sets name, done and error).
  virtual void DescribeOperation(const v1::JobRecord& r, v1::Operation* op) const {}
};

// The kind of a record. Records are checked by CheckKnownKind when loaded, so this
// never sees an unknown kind.
const WorkKind& KindOf(const v1::JobRecord& r);
// FAILED_PRECONDITION naming the record when its kind is not one this build knows
// (a database written by a newer qcal).
absl::Status CheckKnownKind(const std::string& id, const v1::JobRecord& r);
// The state a kind's work ends in when it succeeds.
inline v1::JobState DoneState(const WorkKind& k) {
  return k.is_operation() ? v1::JOB_SUCCEEDED : v1::JOB_CALIBRATED;
}

// Shared by kinds whose reports carry statistics: every linear present, in order,
// valid, with the layout's widths. Fills `out`'s operands and bytes.
absl::Status CheckStatistics(const ReportLayout& layout,
                             const std::vector<v1::LinearStatsProto>& linears,
                             CheckedReport* out);

// The kinds, defined in kinds/*.cc.
const WorkKind& CalibrateKind();
const WorkKind& EvaluateKind();
const WorkKind& ExportKind();

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_WORK_KIND_H_
