#include "worker/service/worker_loop.h"

#include <unistd.h>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace qcal {
namespace {

constexpr int kMaxBackoffMs = 5000;

// Extends a task's lease every `interval` while it runs, and notes when the
// coordinator says the task is cancelled or its lease is gone.
class LeaseKeeper {
 public:
  LeaseKeeper(CoordinatorClient* client, const std::string& worker_id, const v1::Task& task,
              int interval_ms, std::function<void(const std::string&)> log)
      : client_(client), log_(std::move(log)) {
    req_.set_worker_id(worker_id);
    req_.set_task_id(task.task_id());
    req_.set_lease_id(task.lease_id());
    thread_ = std::thread([this, interval_ms] { Loop(interval_ms); });
  }
  ~LeaseKeeper() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void set_samples_done(int64_t n) { samples_done_ = n; }
  bool cancelled() const { return cancelled_.load(); }

 private:
  void Loop(int interval_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(interval_ms), [&] { return finished_; })) {
      v1::HeartbeatRequest req = req_;
      req.set_samples_done(samples_done_.load());
      lock.unlock();
      auto resp = client_->Heartbeat(req);
      lock.lock();
      if (resp.ok() && resp->cancelled()) {
        log_(absl::StrCat("task ", req.task_id(), ": cancelled (",
                          resp->reason().empty() ? "job cancelled" : resp->reason(), "); stopping"));
        cancelled_ = true;
        return;  // the answer will not change: no more heartbeats for this task
      } else if (!resp.ok() && (resp.status().code() == absl::StatusCode::kFailedPrecondition ||
                                resp.status().code() == absl::StatusCode::kNotFound)) {
        log_(absl::StrCat("task ", req.task_id(), ": lease lost (", resp.status().message(), ")"));
        cancelled_ = true;
        return;
      }
    }
  }

  CoordinatorClient* const client_;
  const std::function<void(const std::string&)> log_;
  v1::HeartbeatRequest req_;
  std::atomic<int64_t> samples_done_{0};
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::thread thread_;
};

}  // namespace

bool IsRetryable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kPermissionDenied:
      return false;
    default:
      return true;
  }
}

WorkerLoop::WorkerLoop(WorkerLoopOptions options, CoordinatorClient* client, RunnerTable runners,
                       const std::atomic<int>* stop_requests)
    : o_(std::move(options)), client_(client), runners_(std::move(runners)), stop_(stop_requests) {
  name_ = o_.name;
  if (name_.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    name_ = absl::StrCat(host, "-", getpid());
  }
}

void WorkerLoop::Log(const std::string& msg) const {
  std::cerr << "qcal-worker[" << name_ << "]: " << msg << std::endl;
}

void WorkerLoop::Sleep(int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (stop_->load() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20, ms)));
  }
}

bool WorkerLoop::EnsureRegistered(int* backoff_ms, bool* fatal) {
  if (!worker_id_.empty()) return true;
  v1::RegisterWorkerRequest req;
  req.set_name(name_);
  req.set_device(o_.engine.device);
  auto resp = client_->Register(req);
  if (!resp.ok()) {
    if (resp.status().code() == absl::StatusCode::kUnauthenticated) {
      Log(absl::StrCat("cannot register: ", resp.status().message()));
      *fatal = true;
      return false;
    }
    Log(absl::StrCat("coordinator not reachable (", resp.status().message(), "); retrying"));
    Sleep(*backoff_ms);
    *backoff_ms = std::min(*backoff_ms * 2, kMaxBackoffMs);
    return false;
  }
  worker_id_ = resp->worker_id();
  heartbeat_ms_ = std::max(20, resp->heartbeat_interval_ms());
  *backoff_ms = static_cast<int>(o_.first_backoff.count());
  Log(absl::StrCat("registered as ", worker_id_, " with ", o_.coordinator));
  return true;
}

int WorkerLoop::Run() {
  int tasks = 0;
  int backoff_ms = static_cast<int>(o_.first_backoff.count());
  while (stop_->load() == 0) {
    bool fatal = false;
    if (!EnsureRegistered(&backoff_ms, &fatal)) {
      if (fatal) return 1;
      continue;
    }
    v1::LeaseTaskRequest req;
    req.set_worker_id(worker_id_);
    for (const auto& [kind, runner] : runners_) {
      if (req.loaded_model().empty()) req.set_loaded_model(runner->loaded_model());
    }
    auto resp = client_->Lease(req);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kNotFound) {
        worker_id_.clear();  // the coordinator forgot us (restart): register again
        continue;
      }
      Log(absl::StrCat("LeaseTask: ", resp.status().message()));
      Sleep(backoff_ms);
      backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
      continue;
    }
    backoff_ms = static_cast<int>(o_.first_backoff.count());
    if (!resp->has_task()) {
      Sleep(std::max(20, resp->retry_after_ms()));
      continue;
    }
    RunTask(resp->task());
    if (o_.max_tasks > 0 && ++tasks >= o_.max_tasks) break;
  }
  Log("stopped");
  return 0;
}

void WorkerLoop::RunTask(const v1::Task& task) {
  const auto start = std::chrono::steady_clock::now();
  auto log = [this](const std::string& m) { Log(m); };
  auto runner = runners_.find(task.kind());
  if (runner == runners_.end()) {
    Fail(task, absl::StrCat("this worker cannot run ", v1::TaskKind_Name(task.kind()), " tasks"),
         /*retryable=*/true);
    return;
  }
  LeaseKeeper keeper(client_, worker_id_, task, heartbeat_ms_, log);
  TaskContext ctx{task, worker_id_, client_,
                  [&](int64_t done) {
                    keeper.set_samples_done(done);
                    return !keeper.cancelled() && stop_->load() < 2;
                  },
                  [&] { return keeper.cancelled(); }, log};
  absl::StatusOr<TaskOutcome> outcome = runner->second->Run(ctx);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (keeper.cancelled()) return;  // nothing to report: the job or the lease is gone
  if (!outcome.ok()) {
    keeper.Stop();
    const bool handing_back =
        outcome.status().code() == absl::StatusCode::kCancelled && stop_->load() >= 2;
    Fail(task, handing_back ? "worker shutting down; task handed back" : std::string(outcome.status().message()),
         handing_back || IsRetryable(outcome.status()));
    return;
  }
  if (o_.report_delay_ms > 0) {
    Log(absl::StrCat("task ", task.task_id(), ": done; reporting in ", o_.report_delay_ms,
                     " ms (--debug-report-delay-ms)"));
    std::this_thread::sleep_for(std::chrono::milliseconds(o_.report_delay_ms));
  }
  // The lease stays alive while the report is retried (a coordinator short of disk
  // refuses reports until space returns; the task must not be lost meanwhile).
  Report(task, std::move(outcome).value(), seconds, [&] { return keeper.cancelled(); });
  keeper.Stop();
}

void WorkerLoop::Fail(const v1::Task& task, const std::string& reason, bool retryable) {
  Log(absl::StrCat("task ", task.task_id(), " failed: ", reason));
  v1::FailTaskRequest req;
  req.set_worker_id(worker_id_);
  req.set_task_id(task.task_id());
  req.set_lease_id(task.lease_id());
  req.set_reason(absl::StrCat(name_, ": ", reason));
  req.set_retryable(retryable);
  absl::Status st = client_->Fail(req);
  if (!st.ok()) Log(absl::StrCat("FailTask: ", st.message()));
}

void WorkerLoop::Report(const v1::Task& task, TaskOutcome outcome, double seconds,
                        const std::function<bool()>& lease_lost) {
  TaskReport report;
  v1::CompleteTaskHeader& h = report.header;
  h.set_worker_id(worker_id_);
  h.set_task_id(task.task_id());
  h.set_lease_id(task.lease_id());
  h.set_samples(outcome.samples);
  h.set_tokens(outcome.tokens);
  h.set_compute_seconds(seconds);
  report.stats = std::move(outcome.stats);
  report.result = outcome.result.get();
  const auto give_up = std::chrono::steady_clock::now() + o_.report_retry;
  for (int attempt = 0;; ++attempt) {
    absl::Status st = client_->Complete(report);
    if (st.ok() || st.code() == absl::StatusCode::kAlreadyExists) {
      Log(absl::StrCat("task ", task.task_id(), ": ", outcome.samples, " samples, ", outcome.tokens,
                       " tokens in ", seconds, " s, reported"));
      return;
    }
    const absl::StatusCode c = st.code();
    // RESOURCE_EXHAUSTED: the coordinator is short of disk and keeps the lease while
    // heartbeats arrive; the report waits for space as long as the lease lives.
    const int first = static_cast<int>(o_.first_backoff.count());
    const auto backoff = std::chrono::milliseconds(std::min(2000, first << std::min(attempt, 4)));
    if (c == absl::StatusCode::kResourceExhausted && !lease_lost() && stop_->load() < 2) {
      if (attempt % 30 == 0) {
        Log(absl::StrCat("task ", task.task_id(), ": report deferred (", st.message(),
                         "); keeping the lease and retrying"));
      }
      std::this_thread::sleep_for(backoff);
      continue;
    }
    if (c != absl::StatusCode::kUnavailable && c != absl::StatusCode::kDeadlineExceeded &&
        c != absl::StatusCode::kInternal && c != absl::StatusCode::kUnknown) {
      // The lease is gone or the report was refused: retrying cannot help.
      Log(absl::StrCat("task ", task.task_id(), ": report refused: ", st.message(), " (",
                       absl::StatusCodeToString(c), ")"));
      return;
    }
    if (std::chrono::steady_clock::now() >= give_up) break;
    Log(absl::StrCat("task ", task.task_id(), ": report failed (", st.message(), "); retrying"));
    std::this_thread::sleep_for(backoff);
  }
  Log(absl::StrCat("task ", task.task_id(), ": gave up reporting; the lease will expire"));
}

}  // namespace qcal
