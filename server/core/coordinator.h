// Coordinator: the one core object that owns all calibration state (STYLE.md,
// tensorflow/serving's ServerCore). gRPC services hold a pointer to it and stay thin;
// it is testable without a network over any Store (RocksDB, in-memory, faulty).
//
// State: every mutation is first written to the Store in ONE atomic WriteBatch, then
// applied to the in-memory view, so a crash at any point leaves the Store consistent
// and Create() rebuilds the exact view from the Store alone (restart = resume).
//
// Exactly-once shards: a job's samples are cut into shards of `shard_size` samples;
// a task is a range of pending shards leased to one worker under a fresh lease id.
// CompleteTask applies the task's statistics (Merge operands into the stats family)
// together with its shards' transition to DONE and the job's counters in one batch,
// only while that lease is current. Late, duplicate and foreign reports change
// nothing and get FAILED_PRECONDITION, ALREADY_EXISTS and NOT_FOUND respectively.
// Expired leases return their shards to the queue; a shard whose leases fail
// `max_shard_attempts` times fails the job with the reasons kept.
//
// Spreading work (scheduling.h): a task is never larger than the pending shards
// divided over the live workers. When nothing is pending, an idle worker may get a
// backup lease of a straggler's shards (TaskRecord.backup_of); the first of the two
// reports is merged, in the same one batch that marks the other TASK_CANCELLED with
// superseded_by, so its heartbeats say cancelled and its report is refused. If
// either lease ends without a result, the shards stay with the other.
//
// Thread-safety: all methods are thread-safe (one mutex; store writes happen under
// it, so the order of writes is the order of decisions).
//
// Files: coordinator.cc (creation, rebuilding from the store, persistence helpers),
// validation.cc (job specs), job_api.cc (the client API), watch.cc (notification),
// evaluate_op.cc and export_op.cc (starting the two operations), operations.cc
// (operation records and their API), leasing.cc + scheduling.h (leases, sizing,
// backups), task_results.cc (reports applied exactly once), task_reports.cc
// (registration, heartbeats, failures, expiry), and work_kind.h + kinds/*.cc (what
// differs between calibrations, evaluations and exports).
#ifndef QCAL_SERVER_CORE_COORDINATOR_H_
#define QCAL_SERVER_CORE_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/any.pb.h"
#include "proto/qcal/v1/calibration.pb.h"
#include "proto/qcal/v1/coordinator_state.pb.h"
#include "proto/qcal/v1/worker.pb.h"
#include "common/stats/stats_set.h"
#include "server/core/path_policy.h"
#include "server/core/stats_reader.h"
#include "server/core/work_kind.h"
#include "server/metrics/metrics.h"
#include "server/store/store.h"

namespace qcal::server {

struct CoordinatorOptions {
  // Roots every model/corpus path must resolve inside (at least one).
  std::vector<std::string> data_roots;
  // How long a lease lasts without a heartbeat.
  absl::Duration lease_duration = absl::Seconds(60);
  // Workers are asked to heartbeat this often (a fraction of the lease).
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // Failed or expired leases a shard may have before its job fails.
  int max_shard_attempts = 5;
  // Jobs that are not final at once; SubmitJob beyond it is RESOURCE_EXHAUSTED.
  int max_active_jobs = 1000;
  // Root exports are written under (shared with the workers); empty: Export is
  // FAILED_PRECONDITION.
  std::string output_root;
  // Free bytes the database volume keeps in reserve: below it (or while the store
  // has suspended writes after a failed one) new jobs, evaluations, exports and
  // reports are refused with RESOURCE_EXHAUSTED and no task is leased, so the disk
  // never fills under the database. 0 turns the check off.
  int64_t min_free_bytes = int64_t{256} << 20;
  // Wall clock; tests substitute a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// The database volume as CheckDiskSpace last saw it.
struct DiskState {
  std::optional<int64_t> free_bytes;  // nullopt: a store without a volume
  int64_t reserve_bytes = 0;
  bool writes_suspended = false;  // the store refuses writes after a failed one
  // New work is refused: free_bytes below the reserve, or writes suspended.
  bool refusing = false;
};

class Coordinator {
 public:
  // Rebuilds the state from `store` (not owned; must outlive the coordinator).
  // `metrics` may be null.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(Store* store,
                                                             CoordinatorOptions options,
                                                             Metrics* metrics);

  // ---- client API ----
  absl::StatusOr<v1::Job> SubmitJob(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  // Calls `fn` with chunks of the job's statistics in forward order (at most
  // `max_chunk_bytes` of linears each, at least one linear); stops early if `fn`
  // returns false.
  absl::Status StreamStats(const std::string& job_id, bool allow_partial, int64_t max_chunk_bytes,
                           const std::function<bool(const v1::JobStatsChunk&)>& fn);
  // The same chunks one at a time (what a stream reads as it writes). The checks
  // happen here; the reader only reads.
  absl::StatusOr<StatsReader> OpenStats(const std::string& job_id, bool allow_partial,
                                        int64_t max_chunk_bytes);

  // Change notification: `fn` is called (outside the lock, from the thread that made
  // the change) with the job after every change until Unwatch. Returns a handle.
  // NOT_FOUND for an unknown job.
  absl::StatusOr<int64_t> Watch(const std::string& job_id, std::function<void(const v1::Job&)> fn);
  void Unwatch(int64_t handle);

  // Starts a threshold evaluation of a calibrated job: computes every threshold's clip
  // decisions from the stored statistics and queues (variant x evaluation shard)
  // units that workers lease like calibration shards. Returns the Operation.
  absl::StatusOr<v1::Operation> Evaluate(const v1::EvaluateRequest& request);

  // Starts an export of a calibrated job (export.proto): validates the request,
  // resolves the threshold ("recommended": the newest finished evaluation's) and the
  // output folder under options.output_root, and queues one export task for a
  // worker. Returns the Operation.
  absl::StatusOr<v1::Operation> Export(const v1::ExportRequest& request);

  // ---- long-running operations (google.longrunning shape) ----
  // Name "operations/<id>". NOT_FOUND for an unknown one.
  absl::StatusOr<v1::Operation> GetOperation(const std::string& name);
  // Newest first; filter "" or "job=<id>".
  absl::StatusOr<v1::ListOperationsResponse> ListOperations(const v1::ListOperationsRequest& r);
  // Marks a running operation done with CANCELLED; a finished one is left as is.
  absl::Status CancelOperation(const std::string& name);
  // A counter that moves whenever any operation changes. AwaitOperationChange blocks
  // until it differs from `seen` or `timeout` passes and returns its value, so one
  // thread serves every WaitOperation call (services.cc's OperationWaiters).
  int64_t OperationsVersion() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t AwaitOperationChange(int64_t seen, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- worker API ----
  absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(const v1::RegisterWorkerRequest& r);
  absl::StatusOr<v1::LeaseTaskResponse> LeaseTask(const v1::LeaseTaskRequest& r);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r);
  // `linears` is the concatenation of the report's chunks.
  // `result` is the report's non-statistics result (evaluations), or null.
  absl::StatusOr<v1::CompleteTaskResponse> CompleteTask(
      const v1::CompleteTaskHeader& header, const std::vector<v1::LinearStatsProto>& linears,
      const google::protobuf::Any* result = nullptr);
  absl::Status FailTask(const v1::FailTaskRequest& r);
  // The statistics an export task needs (its parent job's), as StreamStats; only
  // under the task's current lease.
  absl::Status StreamTaskStats(const v1::GetTaskStatsRequest& r, int64_t max_chunk_bytes,
                               const std::function<bool(const v1::JobStatsChunk&)>& fn);
  absl::StatusOr<StatsReader> OpenTaskStats(const v1::GetTaskStatsRequest& r,
                                            int64_t max_chunk_bytes);

  // Returns expired leases' shards to the queue. Called periodically by the server
  // (and directly by tests with a fake clock).
  absl::Status ExpireLeases();

  // Disk space (disk_space.cc). Reads the store's free bytes and whether it has
  // suspended writes; once space is back above the reserve, asks the store to resume
  // (RocksDbStore reopens). Updates the refusal, the metrics and returns the state.
  // Called periodically by the server with ExpireLeases; thread-safe.
  DiskState CheckDiskSpace();
  DiskState disk_state() const;

  const CoordinatorOptions& options() const { return options_; }

 private:
  struct JobView {
    v1::JobRecord record;
    std::vector<v1::ShardRecord> shards;
    std::set<int64_t> pending;  // shard indices
    std::map<std::string, int> linear_index;  // name -> forward index
  };
  struct WorkerView {
    std::string name;
    absl::Time last_seen;
    double samples_per_second = 0;  // moving average of its reports, any job
    // When its last task ended (or it registered); InfiniteFuture while it holds one.
    absl::Time idle_since = absl::InfiniteFuture();
  };

  Coordinator(Store* store, CoordinatorOptions options, Metrics* metrics, PathPolicy paths,
              std::optional<PathPolicy> output_paths);
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads one job's record and shards from the store.
  absl::Status LoadJob(const std::string& id, JobView* j);
  // Brings records of an older store schema (store.h) up to kSchemaVersion, in one
  // batch with the new version.
  absl::Status MigrateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Persists a new job (its record, all shards pending, the id counter) in one batch,
  // then adds it to memory.
  absl::Status InsertNewJob(JobView j, int64_t shards) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A SubmitJob whose request_id names a job already: that job when `spec` equals
  // its spec, ALREADY_EXISTS when it differs; nullopt for a new (or empty) id.
  std::optional<absl::StatusOr<v1::Job>> RetriedSubmitLocked(const std::string& request_id,
                                                             const v1::JobSpec& spec) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `b`; on failure restores `job_id`'s in-memory view (changed ahead of the
  // write) and its leased tasks from the store, then returns the error.
  absl::Status WriteOrReload(const WriteBatch& b, const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Batch helpers: serialize a record into the batch.
  void PutJob(WriteBatch& b, const JobView& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutShard(WriteBatch& b, const std::string& job_id, int64_t shard, const v1::ShardRecord& s);
  void PutTask(WriteBatch& b, const v1::TaskRecord& t);

  // Ends a lease without result: shards back to pending (or the job fails when a
  // shard ran out of attempts). Adds the changes to `b` and to `changed` jobs.
  void ReleaseTask(WriteBatch& b, v1::TaskRecord& task, v1::TaskState end_state,
                   const std::string& reason, bool retryable, std::set<std::string>* changed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailJob(JobView& j, const std::string& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- leasing (leasing.cc) ----
  // The runnable job a worker should take next (oldest first, preferring the model
  // it has loaded), or null.
  JobView* ChooseJobLocked(const std::string& loaded_model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leases the next pending shards of `j` (sized by scheduling.h) to `worker_id`.
  absl::Status LeaseShardsLocked(JobView& j, const std::string& worker_id, absl::Time now,
                                 v1::Task* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // With nothing pending anywhere: leases to `worker_id` a backup of the straggler
  // most worth one (scheduling.h), if any. Returns whether it did.
  absl::StatusOr<bool> LeaseBackupLocked(const std::string& worker_id, absl::Time now,
                                         v1::Task* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new lease of shards [begin, end) of `j` for `worker_id` (not yet stored).
  v1::TaskRecord NewTaskLocked(JobView& j, const std::string& worker_id, int64_t begin,
                               int64_t end, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores `t` with `j` (and whatever `b` holds) and registers the lease; fills `out`.
  absl::Status StartLeaseLocked(WriteBatch& b, JobView& j, const v1::TaskRecord& t,
                                absl::Time now, v1::Task* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task message a worker gets for lease `t` of `j`.
  void FillTask(const JobView& j, const v1::TaskRecord& t, v1::Task* task) const;
  // The other live lease of the same shards as `t` (its backup, or the task it backs
  // up), or null.
  v1::TaskRecord* SiblingLocked(const v1::TaskRecord& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `worker_id`'s share of `j`, added on first use.
  v1::WorkerShare* ShareLocked(JobView& j, const std::string& worker_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Its measured speed on `j`; the job's when it has none.
  double SpeedOnJob(const JobView& j, const std::string& worker_id) const;
  // Workers seen within the last lease period (the qcal_workers gauge, and the
  // divisor of task sizing, which treats 0 as 1).
  int64_t LiveWorkersLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Idle-time and speed accounting of workers (metrics).
  void WorkerLeasedLocked(const std::string& worker_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerTaskEndedLocked(const std::string& worker_id, absl::Time now, double samples,
                             double compute_seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For an export of `parent` into `out`: the newest finished evaluation of the job
  // (null when none), or ALREADY_EXISTS when another export is writing `out`.
  absl::StatusOr<const JobView*> ExportSourcesLocked(const v1::Job& parent,
                                                     const std::string& out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The threshold given, or the evaluation's recommendation for "recommended".
  static absl::StatusOr<double> ExportThreshold(const v1::ExportRequest& req,
                                                const v1::Job& parent,
                                                const JobView* evaluation);
  // Builds an export's internal job record from a validated request (export_op.cc).
  absl::StatusOr<JobView> PlanExportLocked(const v1::ExportRequest& req, double threshold,
                                           const std::string& output_dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps an operation's record in step with its work (progress, and the final
  // result or error); adds the write to `b`.
  void SyncOperation(WriteBatch& b, const JobView& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ---- results (task_results.cc) ----
  // The leased task a report names, if its lease is current and its job not final;
  // otherwise the refusal (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION).
  absl::StatusOr<v1::TaskRecord*> ReportedLeaseLocked(const v1::CompleteTaskHeader& header)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a checked report of `leased` in one batch (statistics, shards, task,
  // progress, the backup race, finishing the work when it was the last).
  absl::Status ApplyReportLocked(const v1::CompleteTaskHeader& header,
                                 const CheckedReport& checked, v1::TaskRecord& leased)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A report's counts: progress, the worker's share and the speed estimates.
  void CountReportLocked(JobView& j, const v1::TaskRecord& t,
                         const v1::CompleteTaskHeader& header, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the merged statistics of a job from the store.
  absl::StatusOr<stats::StatsSet> ReadStats(const std::string& job_id, int64_t linears);
  void Touch(JobView& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewId(const std::string& prefix) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the watchers of `jobs` with their current state (takes mu_ itself).
  void Notify(const std::set<std::string>& jobs) ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESOURCE_EXHAUSTED naming the volume, its free bytes and the reserve while new
  // work is refused (`what`: "new jobs", "reports", ...); OK otherwise.
  absl::Status CheckRoomFor(const std::string& what) const;
  absl::Status ValidateSpec(v1::JobSpec& spec, v1::Job& job, std::vector<std::string>* names,
                            std::vector<int64_t>* in, std::vector<int64_t>* out) const;

  Store* const store_;
  const CoordinatorOptions options_;
  Metrics* const metrics_;
  const PathPolicy paths_;
  const std::optional<PathPolicy> output_paths_;  // set when options.output_root is

  absl::Mutex mu_;
  std::map<std::string, JobView> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::TaskRecord> tasks_ ABSL_GUARDED_BY(mu_);  // leased tasks only
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerView> workers_ ABSL_GUARDED_BY(mu_);
  int64_t next_job_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t id_salt_ ABSL_GUARDED_BY(mu_) = 0;

  absl::CondVar operations_changed_;  // with mu_
  int64_t operations_version_ ABSL_GUARDED_BY(mu_) = 0;

  mutable absl::Mutex disk_mu_;
  DiskState disk_ ABSL_GUARDED_BY(disk_mu_);

  absl::Mutex watch_mu_;
  std::map<int64_t, std::pair<std::string, std::function<void(const v1::Job&)>>> watchers_
      ABSL_GUARDED_BY(watch_mu_);
  int64_t next_watch_ ABSL_GUARDED_BY(watch_mu_) = 1;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_COORDINATOR_H_
