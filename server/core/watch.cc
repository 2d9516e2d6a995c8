// Coordinator: change notification of jobs (Watch, Notify).

#include "server/core/coordinator.h"

#include "absl/strings/str_cat.h"
#include "server/core/records.h"

namespace qcal::server {

absl::StatusOr<int64_t> Coordinator::Watch(const std::string& job_id,
                                           std::function<void(const v1::Job&)> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!jobs_.count(job_id)) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  }
  absl::MutexLock lock(&watch_mu_);
  const int64_t h = next_watch_++;
  watchers_[h] = {job_id, std::move(fn)};
  return h;
}

void Coordinator::Unwatch(int64_t handle) {
  absl::MutexLock lock(&watch_mu_);
  watchers_.erase(handle);
}

void Coordinator::Notify(const std::set<std::string>& jobs) {
  if (jobs.empty()) return;
  std::map<std::string, v1::Job> snapshot;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& id : jobs) {
      auto it = jobs_.find(id);
      if (it != jobs_.end()) snapshot[id] = it->second.record.job();
    }
  }
  std::vector<std::pair<std::function<void(const v1::Job&)>, const v1::Job*>> calls;
  {
    absl::MutexLock lock(&watch_mu_);
    for (const auto& [h, w] : watchers_) {
      auto it = snapshot.find(w.first);
      if (it != snapshot.end()) calls.emplace_back(w.second, &it->second);
    }
  }
  for (auto& [fn, job] : calls) fn(*job);
}

}  // namespace qcal::server
