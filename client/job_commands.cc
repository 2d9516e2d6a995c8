// submit, status, watch, list, cancel: thin wrappers over CalibrationService.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/command.h"
#include "client/exit_codes.h"
#include "client/interrupt.h"
#include "client/job_spec_flags.h"
#include "client/job_view.h"
#include "client/job_watch.h"
#include "client/json_output.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

constexpr int32_t kMaxPageSize = 1000;

// Follows the job to its end with the display the output calls for; OK only when
// it ends CALIBRATED.
absl::Status WaitAndShow(const CommandEnv& env, const Connection& connection,
                         const std::string& job_id) {
  ScopedInterruptHandler interrupts;
  JobDisplay display(env.io->out, env.display_mode());
  auto job = WatchUntilFinal(connection, job_id, &display);
  display.Finish();
  if (!job.ok()) return job.status();
  return JobOutcome(*job);
}

struct SubmitFlags {
  JobSpecFlags spec;
  std::string request_id;
  bool wait = false;
};

absl::Status Submit(const CommandEnv& env, const SubmitFlags& flags) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::SubmitJobRequest request;
  *request.mutable_spec() = ToJobSpec(flags.spec);
  request.set_request_id(flags.request_id);
  v1::Job job;
  auto context = (*connection)->UnaryContext();
  if (grpc::Status s = stub->SubmitJob(context.get(), request, &job); !s.ok()) {
    return (*connection)->ToStatus(s);
  }
  if (!flags.wait) {
    if (env.json()) return PrintJsonLine(env, job);
    env.out() << job.id() << "\n";
    return absl::OkStatus();
  }
  if (!env.json()) env.out() << "submitted " << job.id() << "\n" << std::flush;
  return WaitAndShow(env, **connection, job.id());
}

absl::Status Status(const CommandEnv& env, const std::string& job_id) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = (*connection)->UnaryContext();
  if (grpc::Status s = stub->GetJob(context.get(), request, &job); !s.ok()) {
    return (*connection)->ToStatus(s);
  }
  if (env.json()) return PrintJsonLine(env, job);
  env.out() << FormatJobDetails(job);
  return absl::OkStatus();
}

absl::Status Watch(const CommandEnv& env, const std::string& job_id) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  return WaitAndShow(env, **connection, job_id);
}

struct ListFlags {
  std::string state;
  int32_t page_size = 0;
  bool all = false;
};

absl::Status List(const CommandEnv& env, const ListFlags& flags) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::ListJobsRequest request;
  request.set_page_size(flags.page_size);
  if (!flags.state.empty()) {
    auto state = ParseJobState(flags.state);
    if (!state.ok()) return state.status();
    request.set_state(*state);
  }
  v1::ListJobsResponse all;
  while (true) {
    v1::ListJobsResponse page;
    auto context = (*connection)->UnaryContext();
    if (grpc::Status s = stub->ListJobs(context.get(), request, &page); !s.ok()) {
      return (*connection)->ToStatus(s);
    }
    for (v1::Job& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    all.set_next_page_token(page.next_page_token());
    if (!flags.all || page.next_page_token().empty()) break;
    if (page.next_page_token() == request.page_token()) {
      return absl::InternalError("the server returned the same page token twice");
    }
    request.set_page_token(page.next_page_token());
  }
  if (env.json()) return PrintJsonLine(env, all);
  env.out() << FormatJobTable(all.jobs());
  if (!all.next_page_token().empty()) {
    env.out() << "(more jobs: use --all, or --page-size up to " << kMaxPageSize << ")\n";
  }
  return absl::OkStatus();
}

absl::Status Cancel(const CommandEnv& env, const std::string& job_id) {
  auto connection = env.Connect();
  if (!connection.ok()) return connection.status();
  auto stub = v1::CalibrationService::NewStub((*connection)->channel());
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = (*connection)->UnaryContext();
  if (grpc::Status s = stub->CancelJob(context.get(), request, &job); !s.ok()) {
    return (*connection)->ToStatus(s);
  }
  if (env.json()) return PrintJsonLine(env, job);
  env.out() << job.id() << " " << ShortStateName(job.state()) << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddJobCommands(CLI::App& app, CommandSlot* slot) {
  {
    auto flags = std::make_shared<SubmitFlags>();
    CLI::App* cmd = app.add_subcommand(
        "submit", "Submit a calibration job; prints its id (or follows it with --wait)");
    AddJobSpecFlags(cmd, &flags->spec);
    cmd->add_option("--request-id", flags->request_id,
                    "Idempotency key: resubmitting with it returns the first job");
    cmd->add_flag("--wait", flags->wait,
                  "Follow the job until it ends (exit 3 if FAILED or CANCELLED)");
    SetAction(cmd, slot, [flags](const CommandEnv& env) { return Submit(env, *flags); });
  }
  {
    auto job_id = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("status", "Show one job");
    cmd->add_option("JOB", *job_id, "Job id")->required();
    SetAction(cmd, slot, [job_id](const CommandEnv& env) { return Status(env, *job_id); });
  }
  {
    auto job_id = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand(
        "watch", "Follow a job until it ends (exit 3 if FAILED or CANCELLED)");
    cmd->add_option("JOB", *job_id, "Job id")->required();
    SetAction(cmd, slot, [job_id](const CommandEnv& env) { return Watch(env, *job_id); });
  }
  {
    auto flags = std::make_shared<ListFlags>();
    CLI::App* cmd = app.add_subcommand("list", "List jobs, newest first");
    cmd->add_option("--state", flags->state,
                    "Only jobs in this state: pending, running, calibrated, failed, "
                    "cancelled");
    cmd->add_option("--page-size", flags->page_size, "Jobs per page [server default 50]")
        ->check(CLI::Range(int32_t{1}, kMaxPageSize));
    cmd->add_flag("--all", flags->all, "Fetch every page");
    SetAction(cmd, slot, [flags](const CommandEnv& env) { return List(env, *flags); });
  }
  {
    auto job_id = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("cancel", "Cancel a job that has not ended");
    cmd->add_option("JOB", *job_id, "Job id")->required();
    SetAction(cmd, slot, [job_id](const CommandEnv& env) { return Cancel(env, *job_id); });
  }
}

}  // namespace qcal::client
