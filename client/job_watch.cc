#include "client/job_watch.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"

namespace qcal::client {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

// A helper thread that, while a stream is open, cancels it on an interrupt or a
// failed health check and ticks the display.
class Monitor {
 public:
  Monitor(JobDisplay* display, const std::function<absl::Status()>* health_check)
      : display_(display), health_check_(health_check), thread_([this] { Loop(); }) {}
  ~Monitor() {
    stop_.Notify();
    thread_.join();
  }

  // The context of the call in progress (nullptr between calls).
  void SetContext(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    context_ = context;
    if (context_ != nullptr && !reason_.ok()) context_->TryCancel();
  }
  // Why the watch must end; OK while it may go on.
  absl::Status reason() {
    absl::MutexLock lock(&mu_);
    return reason_;
  }

 private:
  void Loop() {
    while (!stop_.WaitForNotificationWithTimeout(kPollInterval)) {
      absl::Status why;
      if (InterruptCount() > 0) {
        why = InterruptedError("interrupted");
      } else if (*health_check_) {
        why = (*health_check_)();
      }
      if (display_ != nullptr) display_->Tick();
      if (why.ok()) continue;
      absl::MutexLock lock(&mu_);
      if (reason_.ok()) reason_ = why;
      if (context_ != nullptr) context_->TryCancel();
    }
  }

  JobDisplay* const display_;
  const std::function<absl::Status()>* const health_check_;
  absl::Notification stop_;
  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

absl::StatusOr<v1::Job> WatchUntilFinal(const Connection& connection,
                                        const std::string& job_id, JobDisplay* display,
                                        const WatchOptions& options) {
  auto stub = v1::CalibrationService::NewStub(connection.channel());
  Monitor monitor(display, &options.health_check);
  absl::Time last_heard = absl::Now();
  bool heard_any = false;
  absl::Duration backoff = absl::Milliseconds(250);
  while (true) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    std::unique_ptr<grpc::ClientContext> context = connection.StreamContext();
    monitor.SetContext(context.get());
    auto reader = stub->WatchJob(context.get(), request);
    v1::Job job;
    std::optional<v1::Job> last;
    while (reader->Read(&job)) {
      heard_any = true;
      last_heard = absl::Now();
      backoff = absl::Milliseconds(250);
      if (display != nullptr) display->Update(job);
      last = job;
      if (v1::IsFinalJobState(job.state())) {
        context->TryCancel();
        break;
      }
    }
    const grpc::Status finish = reader->Finish();
    monitor.SetContext(nullptr);
    if (absl::Status why = monitor.reason(); !why.ok()) return why;
    if (last.has_value() && v1::IsFinalJobState(last->state())) return *last;
    // The stream ended before a final state.
    const bool retryable =
        finish.ok() || finish.error_code() == grpc::StatusCode::UNAVAILABLE;
    if (!retryable || !heard_any) {
      if (finish.ok()) {
        return absl::UnavailableError(
            absl::StrCat("the watch of ", job_id, " ended before the job did"));
      }
      return connection.ToStatus(finish);
    }
    if (absl::Now() - last_heard > options.reconnect_for) {
      return absl::UnavailableError(absl::StrCat(
          "lost the watch of ", job_id, " and could not reconnect to ",
          connection.target(), " for ", absl::FormatDuration(options.reconnect_for),
          finish.ok() ? "" : absl::StrCat(": ", finish.error_message())));
    }
    // Wait before reconnecting, still answering interrupts and health checks.
    const absl::Time resume = absl::Now() + backoff;
    while (absl::Now() < resume) {
      if (absl::Status why = monitor.reason(); !why.ok()) return why;
      absl::SleepFor(std::min(kPollInterval, resume - absl::Now()));
    }
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

absl::Status JobOutcome(const v1::Job& job) {
  switch (job.state()) {
    case v1::JOB_CALIBRATED:
      return absl::OkStatus();
    case v1::JOB_FAILED: {
      std::string why = job.error();
      if (why.empty() && job.failure_reasons_size() > 0) {
        why = job.failure_reasons(job.failure_reasons_size() - 1);
      }
      return JobEndedError(v1::JobState_Name(job.state()),
                           absl::StrCat("job ", job.id(), " failed",
                                        why.empty() ? "" : ": ", why));
    }
    case v1::JOB_CANCELLED:
      return JobEndedError(v1::JobState_Name(job.state()),
                           absl::StrCat("job ", job.id(), " was cancelled"));
    default:
      return absl::InternalError(absl::StrCat("job ", job.id(), " is not final: ",
                                              v1::JobState_Name(job.state())));
  }
}

}  // namespace qcal::client
