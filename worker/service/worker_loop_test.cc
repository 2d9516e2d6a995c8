// The worker loop against a fake coordinator client and fake runners: leasing and
// reporting, heartbeats that say cancelled, refused (stale) reports, a coordinator
// restart (forgotten worker, reports failing in transit), failures and shutdown.
#include "worker/service/worker_loop.h"

#include <deque>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"

namespace qcal {
namespace {

using namespace std::chrono_literals;

class FakeCoordinator final : public CoordinatorClient {
 public:
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& r) override {
    std::lock_guard<std::mutex> lock(mu);
    ++registrations;
    if (!register_error.ok()) return register_error;
    v1::RegisterWorkerResponse resp;
    resp.set_worker_id("w-" + std::to_string(registrations));
    resp.set_heartbeat_interval_ms(20);
    return resp;
  }
  absl::StatusOr<v1::LeaseTaskResponse> Lease(const v1::LeaseTaskRequest& r) override {
    std::lock_guard<std::mutex> lock(mu);
    leases.push_back(r);
    if (!lease_errors.empty()) {
      absl::Status st = lease_errors.front();
      lease_errors.pop_front();
      return st;
    }
    v1::LeaseTaskResponse resp;
    if (tasks.empty()) {
      resp.set_retry_after_ms(10);
    } else {
      *resp.mutable_task() = tasks.front();
      tasks.pop_front();
    }
    return resp;
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) override {
    std::lock_guard<std::mutex> lock(mu);
    heartbeats.push_back(r);
    if (!heartbeat_error.ok()) return heartbeat_error;
    v1::HeartbeatResponse resp;
    resp.set_cancelled(cancel_on_heartbeat);
    if (cancel_on_heartbeat) resp.set_reason("job job-1 is JOB_CANCELLED");
    return resp;
  }
  absl::Status Complete(const TaskReport& report) override {
    std::lock_guard<std::mutex> lock(mu);
    reports.push_back(report.header);
    report_linears.push_back(report.stats.linears_size());
    if (!complete_errors.empty()) {
      absl::Status st = complete_errors.front();
      complete_errors.pop_front();
      return st;
    }
    return absl::OkStatus();
  }
  absl::Status Fail(const v1::FailTaskRequest& r) override {
    std::lock_guard<std::mutex> lock(mu);
    failures.push_back(r);
    return absl::OkStatus();
  }
  absl::StatusOr<TaskStats> ReadTaskStats(const v1::GetTaskStatsRequest&) override {
    return absl::UnimplementedError("not used");
  }

  std::mutex mu;
  int registrations = 0;
  absl::Status register_error;
  std::deque<v1::Task> tasks;
  std::deque<absl::Status> lease_errors;
  std::deque<absl::Status> complete_errors;
  bool cancel_on_heartbeat = false;
  absl::Status heartbeat_error;
  std::vector<v1::LeaseTaskRequest> leases;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::CompleteTaskHeader> reports;
  std::vector<int> report_linears;
  std::vector<v1::FailTaskRequest> failures;
};

// Reports `samples` samples with one linear; or runs until told to stop (then
// CANCELLED, as the engine does); or fails with `error`.
class FakeRunner final : public TaskRunner {
 public:
  absl::StatusOr<TaskOutcome> Run(const TaskContext& ctx) override {
    ++runs;
    if (!error.ok()) return error;
    if (run_until_stopped) {
      const auto give_up = std::chrono::steady_clock::now() + 10s;
      for (int64_t done = 0; ctx.keep_going(done); ++done) {
        if (std::chrono::steady_clock::now() > give_up) return absl::InternalError("never stopped");
        if (on_batch) on_batch();
        std::this_thread::sleep_for(5ms);
      }
      stopped_by_loop = true;
      return absl::CancelledError("stopped");
    }
    TaskOutcome out;
    out.samples = ctx.task.sample_end() - ctx.task.sample_begin();
    out.tokens = out.samples * 16;
    out.stats.add_linears()->set_name("model.layers.0.mlp.down_proj");
    return out;
  }
  std::string loaded_model() const override { return runs > 0 ? "/models/tiny" : ""; }

  int runs = 0;
  absl::Status error;
  bool run_until_stopped = false;
  bool stopped_by_loop = false;
  std::function<void()> on_batch;
};

v1::Task MakeTask(const std::string& id, v1::TaskKind kind = v1::TASK_CALIBRATE) {
  v1::Task t;
  t.set_task_id(id);
  t.set_job_id("job-1");
  t.set_kind(kind);
  t.set_lease_id("lease-" + id);
  t.set_model("/models/tiny");
  t.set_sample_begin(8);
  t.set_sample_end(12);
  return t;
}

class WorkerLoopTest : public ::testing::Test {
 protected:
  // Runs the loop to `max_tasks` with one FakeRunner for TASK_CALIBRATE.
  int Run(int max_tasks) {
    WorkerLoopOptions o;
    o.name = "test-worker";
    o.max_tasks = max_tasks;
    o.report_retry = 2s;
    o.first_backoff = 5ms;
    auto runner = std::make_unique<FakeRunner>();
    runner_ = runner.get();
    configure_(*runner_);
    RunnerTable table;
    table[v1::TASK_CALIBRATE] = std::move(runner);
    WorkerLoop loop(o, &fake_, std::move(table), &stop_);
    return loop.Run();
  }

  FakeCoordinator fake_;
  FakeRunner* runner_ = nullptr;
  std::function<void(FakeRunner&)> configure_ = [](FakeRunner&) {};
  std::atomic<int> stop_{0};
};

TEST_F(WorkerLoopTest, LeasesRunsAndReportsEachTaskUnderItsLease) {
  fake_.tasks = {MakeTask("job-1.t1"), MakeTask("job-1.t2")};
  EXPECT_EQ(Run(2), 0);
  ASSERT_EQ(fake_.reports.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& h = fake_.reports[i];
    EXPECT_EQ(h.worker_id(), "w-1");
    EXPECT_EQ(h.task_id(), "job-1.t" + std::to_string(i + 1));
    EXPECT_EQ(h.lease_id(), "lease-job-1.t" + std::to_string(i + 1));
    EXPECT_EQ(h.samples(), 4);
    EXPECT_EQ(h.tokens(), 64);
    EXPECT_GE(h.compute_seconds(), 0);
    EXPECT_EQ(fake_.report_linears[i], 1);
  }
  EXPECT_TRUE(fake_.failures.empty());
  // The second lease asks for work on the model the first task loaded.
  ASSERT_GE(fake_.leases.size(), 2u);
  EXPECT_EQ(fake_.leases[0].loaded_model(), "");
  EXPECT_EQ(fake_.leases[1].loaded_model(), "/models/tiny");
}

TEST_F(WorkerLoopTest, AHeartbeatThatSaysCancelledStopsTheTaskAndReportsNothing) {
  fake_.tasks = {MakeTask("job-1.t1")};
  fake_.cancel_on_heartbeat = true;
  configure_ = [](FakeRunner& r) { r.run_until_stopped = true; };
  EXPECT_EQ(Run(1), 0);
  EXPECT_TRUE(runner_->stopped_by_loop);
  EXPECT_FALSE(fake_.heartbeats.empty());
  EXPECT_EQ(fake_.heartbeats[0].lease_id(), "lease-job-1.t1");
  EXPECT_TRUE(fake_.reports.empty());
  EXPECT_TRUE(fake_.failures.empty()) << "a cancelled task is not failed";
}

TEST_F(WorkerLoopTest, ALostLeaseStopsTheTaskToo) {
  fake_.tasks = {MakeTask("job-1.t1")};
  fake_.heartbeat_error = absl::FailedPreconditionError("lease lease-x of task job-1.t1 is not current");
  configure_ = [](FakeRunner& r) { r.run_until_stopped = true; };
  EXPECT_EQ(Run(1), 0);
  EXPECT_TRUE(runner_->stopped_by_loop);
  EXPECT_TRUE(fake_.reports.empty());
  EXPECT_TRUE(fake_.failures.empty());
}

// Issue 15: a coordinator short of disk refuses reports with RESOURCE_EXHAUSTED.
// The worker keeps its lease (heartbeats go on) and retries past report_retry, for
// as long as the lease lives, then reports once.
TEST_F(WorkerLoopTest, AReportRefusedForLackOfDiskKeepsTheLeaseAndIsRetried) {
  fake_.tasks = {MakeTask("job-1.t1")};
  for (int i = 0; i < 32; ++i) {
    fake_.complete_errors.push_back(absl::ResourceExhaustedError(
        "the database volume /db has 1000 bytes free, below the reserve"));
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Run(1), 0);
  EXPECT_GT(std::chrono::steady_clock::now() - start, 2s) << "longer than report_retry";
  EXPECT_EQ(fake_.reports.size(), 33u);
  EXPECT_TRUE(fake_.failures.empty());
  ASSERT_FALSE(fake_.heartbeats.empty());
  EXPECT_EQ(fake_.heartbeats.back().lease_id(), "lease-job-1.t1");
  EXPECT_GT(fake_.heartbeats.size(), 10u) << "heartbeats continue while the report waits";
}

TEST_F(WorkerLoopTest, AReportRefusedAsStaleIsNotRetriedAndTheLoopGoesOn) {
  fake_.tasks = {MakeTask("job-1.t1"), MakeTask("job-1.t2")};
  fake_.complete_errors = {absl::FailedPreconditionError("task job-1.t1 was superseded")};
  EXPECT_EQ(Run(2), 0);
  ASSERT_EQ(fake_.reports.size(), 2u) << "one refused report, then the next task's";
  EXPECT_EQ(fake_.reports[0].task_id(), "job-1.t1");
  EXPECT_EQ(fake_.reports[1].task_id(), "job-1.t2");
  EXPECT_TRUE(fake_.failures.empty());
}

TEST_F(WorkerLoopTest, ACoordinatorRestartIsRidden) {
  fake_.tasks = {MakeTask("job-1.t1")};
  // Down while leasing, then it forgot the worker; the report fails in transit twice
  // and then lands (or had landed: ALREADY_EXISTS counts as reported).
  fake_.lease_errors = {absl::UnavailableError("connection refused"),
                        absl::NotFoundError("unknown worker \"w-1\"; register again")};
  fake_.complete_errors = {absl::UnavailableError("connection reset"),
                           absl::DeadlineExceededError("deadline"),
                           absl::AlreadyExistsError("already completed")};
  EXPECT_EQ(Run(1), 0);
  EXPECT_EQ(fake_.registrations, 2);
  ASSERT_EQ(fake_.reports.size(), 3u);
  for (const auto& h : fake_.reports) EXPECT_EQ(h.worker_id(), "w-2");
  EXPECT_TRUE(fake_.failures.empty());
}

TEST_F(WorkerLoopTest, ErrorsAreFailedRetryableUnlessTheInputIsBad) {
  fake_.tasks = {MakeTask("job-1.t1"), MakeTask("job-1.t2"), MakeTask("job-1.t3", v1::TASK_EXPORT)};
  configure_ = [](FakeRunner& r) { r.error = absl::InvalidArgumentError("sample 9 has no tokens"); };
  EXPECT_EQ(Run(3), 0);
  ASSERT_EQ(fake_.failures.size(), 3u);
  EXPECT_FALSE(fake_.failures[0].retryable());
  EXPECT_NE(fake_.failures[0].reason().find("sample 9 has no tokens"), std::string::npos);
  EXPECT_NE(fake_.failures[0].reason().find("test-worker"), std::string::npos);
  EXPECT_EQ(fake_.failures[0].lease_id(), "lease-job-1.t1");
  EXPECT_FALSE(fake_.failures[1].retryable());
  // A kind this worker has no runner for goes back for another worker.
  EXPECT_TRUE(fake_.failures[2].retryable());
  EXPECT_NE(fake_.failures[2].reason().find("TASK_EXPORT"), std::string::npos);
  EXPECT_TRUE(fake_.reports.empty());
}

TEST_F(WorkerLoopTest, ASecondStopRequestHandsTheTaskBack) {
  fake_.tasks = {MakeTask("job-1.t1")};
  configure_ = [this](FakeRunner& r) {
    r.run_until_stopped = true;
    r.on_batch = [this] { stop_ = 2; };
  };
  EXPECT_EQ(Run(0), 0);
  ASSERT_EQ(fake_.failures.size(), 1u);
  EXPECT_TRUE(fake_.failures[0].retryable());
  EXPECT_NE(fake_.failures[0].reason().find("handed back"), std::string::npos);
  EXPECT_TRUE(fake_.reports.empty());
}

TEST_F(WorkerLoopTest, RefusedCredentialsEndTheWorker) {
  fake_.register_error = absl::UnauthenticatedError("missing or wrong bearer token");
  EXPECT_EQ(Run(0), 1);
  EXPECT_EQ(fake_.registrations, 1);
}

}  // namespace
}  // namespace qcal
