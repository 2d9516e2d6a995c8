// The coordinator's Prometheus metrics, defined once with typed accessors
// (Triton's habit): core code increments them, the binary only exposes the registry
// on its own port (prometheus::Exposer, see server/main.cc).
//
// Thread-safety: every accessor may be called from any thread.
#ifndef QCAL_SERVER_METRICS_METRICS_H_
#define QCAL_SERVER_METRICS_METRICS_H_

#include <map>
#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace qcal::server {

class Metrics {
 public:
  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // qcal_jobs{state="..."}: jobs per state (set as a whole).
  void SetJobsByState(const std::map<std::string, int64_t>& counts);
  // qcal_tasks{state="leased"|"pending_shards"|...}.
  void SetTasksByState(const std::map<std::string, int64_t>& counts);
  // qcal_workers: registered workers seen within the last lease period.
  void SetWorkers(int64_t n);
  // qcal_lease_expiries_total.
  void LeaseExpired() { lease_expiries_->Increment(); }
  // qcal_stale_reports_total: reports refused for a non-current lease.
  void StaleReport() { stale_reports_->Increment(); }
  // qcal_reports_total and qcal_report_bytes_total.
  void Report(int64_t bytes) {
    reports_->Increment();
    report_bytes_->Increment(static_cast<double>(bytes));
  }
  // qcal_shard_merge_seconds: time to validate and apply one report.
  void MergeLatency(double seconds) { merge_latency_->Observe(seconds); }
  // qcal_tokens_processed_total: non-padding tokens merged into statistics.
  void TokensProcessed(int64_t n) { tokens_->Increment(static_cast<double>(n)); }
  // qcal_db_size_bytes.
  void SetDbSize(int64_t bytes) { db_size_->Set(static_cast<double>(bytes)); }
  // qcal_db_free_bytes (free bytes on the database volume; -1 when unknown) and
  // qcal_db_refusing_work (1 while new work is refused for lack of disk).
  void SetDiskState(int64_t free_bytes, bool refusing) {
    db_free_->Set(static_cast<double>(free_bytes));
    db_refusing_->Set(refusing ? 1 : 0);
  }

  // Per worker, labelled {worker_id, name}:
  // qcal_worker_samples_per_second: its measured speed (moving average of its reports).
  void SetWorkerSpeed(const std::string& worker_id, const std::string& name, double sps);
  // qcal_worker_idle_seconds_total: time from the end of one of its tasks (or its
  // registration) to its next lease.
  void AddWorkerIdle(const std::string& worker_id, const std::string& name, double seconds);
  // Drops a worker's series once the coordinator forgets it (bounded cardinality).
  void RemoveWorker(const std::string& worker_id, const std::string& name);
  // qcal_backup_tasks_total{result="started"|"won"}: backup leases for stragglers,
  // and those whose report was merged first.
  void BackupStarted() { backups_started_->Increment(); }
  void BackupWon() { backups_won_->Increment(); }
  // qcal_rpc_duration_seconds{method="/qcal.v1.X/Y", code="OK"|...}: every RPC served
  // (server/service/rpc_metrics.h records them).
  void Rpc(const std::string& method, const std::string& code, double seconds);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* jobs_family_;
  prometheus::Family<prometheus::Gauge>* tasks_family_;
  prometheus::Gauge* workers_;
  prometheus::Counter* lease_expiries_;
  prometheus::Counter* stale_reports_;
  prometheus::Counter* reports_;
  prometheus::Counter* report_bytes_;
  prometheus::Histogram* merge_latency_;
  prometheus::Counter* tokens_;
  prometheus::Gauge* db_size_;
  prometheus::Gauge* db_free_;
  prometheus::Gauge* db_refusing_;
  prometheus::Family<prometheus::Gauge>* worker_speed_family_;
  prometheus::Family<prometheus::Counter>* worker_idle_family_;
  prometheus::Counter* backups_started_;
  prometheus::Counter* backups_won_;
  prometheus::Family<prometheus::Histogram>* rpc_family_;
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_METRICS_METRICS_H_
