#include "server/metrics/metrics.h"

namespace qcal::server {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  jobs_family_ = &prometheus::BuildGauge().Name("qcal_jobs").Help("Jobs by state").Register(r);
  tasks_family_ = &prometheus::BuildGauge()
                       .Name("qcal_tasks")
                       .Help("Shards by state (pending, leased, done) and leased tasks")
                       .Register(r);
  workers_ = &prometheus::BuildGauge()
                  .Name("qcal_workers")
                  .Help("Workers seen within the last lease period")
                  .Register(r)
                  .Add({});
  lease_expiries_ = &prometheus::BuildCounter()
                         .Name("qcal_lease_expiries_total")
                         .Help("Task leases that expired (worker died or hung)")
                         .Register(r)
                         .Add({});
  stale_reports_ = &prometheus::BuildCounter()
                        .Name("qcal_stale_reports_total")
                        .Help("Reports refused because their lease was not current")
                        .Register(r)
                        .Add({});
  reports_ = &prometheus::BuildCounter()
                  .Name("qcal_reports_total")
                  .Help("Task results merged")
                  .Register(r)
                  .Add({});
  report_bytes_ = &prometheus::BuildCounter()
                       .Name("qcal_report_bytes_total")
                       .Help("Bytes of statistics merged")
                       .Register(r)
                       .Add({});
  merge_latency_ = &prometheus::BuildHistogram()
                        .Name("qcal_shard_merge_seconds")
                        .Help("Time to validate and apply one task result")
                        .Register(r)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                     0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10});
  tokens_ = &prometheus::BuildCounter()
                 .Name("qcal_tokens_processed_total")
                 .Help("Non-padding tokens merged into statistics")
                 .Register(r)
                 .Add({});
  db_size_ = &prometheus::BuildGauge()
                  .Name("qcal_db_size_bytes")
                  .Help("Approximate RocksDB size on disk")
                  .Register(r)
                  .Add({});
  db_free_ = &prometheus::BuildGauge()
                  .Name("qcal_db_free_bytes")
                  .Help("Free bytes on the database volume (-1: unknown)")
                  .Register(r)
                  .Add({});
  db_free_->Set(-1);
  db_refusing_ = &prometheus::BuildGauge()
                     .Name("qcal_db_refusing_work")
                     .Help("1 while new jobs and reports are refused for lack of disk space")
                     .Register(r)
                     .Add({});
  worker_speed_family_ = &prometheus::BuildGauge()
                              .Name("qcal_worker_samples_per_second")
                              .Help("Measured speed of each worker (moving average of its reports)")
                              .Register(r);
  worker_idle_family_ = &prometheus::BuildCounter()
                             .Name("qcal_worker_idle_seconds_total")
                             .Help("Time each worker waited between its tasks")
                             .Register(r);
  auto& backups = prometheus::BuildCounter()
                      .Name("qcal_backup_tasks_total")
                      .Help("Backup leases started for stragglers, and those that won")
                      .Register(r);
  backups_started_ = &backups.Add({{"result", "started"}});
  backups_won_ = &backups.Add({{"result", "won"}});
  rpc_family_ = &prometheus::BuildHistogram()
                     .Name("qcal_rpc_duration_seconds")
                     .Help("Served RPCs by method and result code, from arrival to end")
                     .Register(r);
}

void Metrics::Rpc(const std::string& method, const std::string& code, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.0005, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100};
  rpc_family_->Add({{"method", method}, {"code", code}}, kBuckets).Observe(seconds);
}

void Metrics::SetWorkerSpeed(const std::string& worker_id, const std::string& name, double sps) {
  worker_speed_family_->Add({{"worker_id", worker_id}, {"name", name}}).Set(sps);
}

void Metrics::AddWorkerIdle(const std::string& worker_id, const std::string& name,
                            double seconds) {
  if (seconds > 0) worker_idle_family_->Add({{"worker_id", worker_id}, {"name", name}}).Increment(seconds);
}

void Metrics::RemoveWorker(const std::string& worker_id, const std::string& name) {
  const prometheus::Labels labels{{"worker_id", worker_id}, {"name", name}};
  worker_speed_family_->Remove(&worker_speed_family_->Add(labels));
  worker_idle_family_->Remove(&worker_idle_family_->Add(labels));
}

void Metrics::SetJobsByState(const std::map<std::string, int64_t>& counts) {
  for (const auto& [state, n] : counts) {
    jobs_family_->Add({{"state", state}}).Set(static_cast<double>(n));
  }
}

void Metrics::SetTasksByState(const std::map<std::string, int64_t>& counts) {
  for (const auto& [state, n] : counts) {
    tasks_family_->Add({{"state", state}}).Set(static_cast<double>(n));
  }
}

void Metrics::SetWorkers(int64_t n) { workers_->Set(static_cast<double>(n)); }

}  // namespace qcal::server
