#include "bench/load/control_plane.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/load/coordinator_process.h"
#include "bench/load/fake_worker.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/worker.grpc.pb.h"

namespace qcal::bench {
namespace {

// Counts WatchJob streams' events (callbacks come from gRPC threads).
//
// Delivery delay: only the fake worker changes the watched job, and each of its
// LeaseTask and CompleteTask calls bumps the job's version by exactly one, so the
// version after its k-th call is first_version + 1 + k. The worker stores each call's
// start time (steady clock) before making it; a stream that receives version v
// measures from the start of the call that made v (so the delay includes that call's
// own processing). Versions the server coalesced away are simply not seen.
struct WatchBoard {
  WatchBoard(int streams, int64_t first_version, int changes)
      : total(streams), first_version(first_version), change_start_ns(changes) {}
  const int total;
  const int64_t first_version;                        // the version SubmitJob returned
  std::vector<std::atomic<int64_t>> change_start_ns;  // 0: not made yet
  absl::Mutex mu;
  int opened ABSL_GUARDED_BY(mu) = 0;
  int done ABSL_GUARDED_BY(mu) = 0;
  Latencies open;      // call start -> first message
  Latencies delivery;  // start of the call that made the version -> message received
};

int64_t SteadyNs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool AllOpenedOrDone(WatchBoard* b) {
  b->mu.AssertHeld();
  return b->opened + b->done >= b->total;
}

bool AllDone(WatchBoard* b) {
  b->mu.AssertHeld();
  return b->done >= b->total;
}

// Waits up to `timeout` for `cond` on the board; returns whether it held.
bool AwaitBoard(WatchBoard& board, bool (*cond)(WatchBoard*), absl::Duration timeout) {
  absl::MutexLock lock(&board.mu);
  return board.mu.AwaitWithTimeout(absl::Condition(cond, &board), timeout);
}

class Watcher final : public grpc::ClientReadReactor<v1::Job> {
 public:
  explicit Watcher(WatchBoard* board) : board_(board) {}

  void Start(v1::CalibrationService::Stub* stub, const std::string& job_id,
             std::chrono::system_clock::time_point deadline) {
    request_.set_job_id(job_id);
    context_.set_deadline(deadline);
    start_ = Clock::now();
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&job_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    if (messages_ == 0) {
      board_->open.Add(Seconds(Clock::now() - start_));
      absl::MutexLock lock(&board_->mu);
      ++board_->opened;
    } else {
      const int64_t k = job_.version() - board_->first_version - 1;
      if (k >= 0 && k < static_cast<int64_t>(board_->change_start_ns.size())) {
        const int64_t made = board_->change_start_ns[static_cast<size_t>(k)].load();
        if (made > 0)
          board_->delivery.Add(1e-9 * static_cast<double>(SteadyNs(Clock::now()) - made));
      }
    }
    if (job_.version() <= last_version_) ++out_of_order_;
    last_version_ = job_.version();
    last_state_ = job_.state();
    ++messages_;
    StartRead(&job_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    absl::MutexLock lock(&board_->mu);
    ++board_->done;
  }

  // Read after the board counted this stream done.
  const grpc::Status& status() const { return status_; }
  int64_t messages() const { return messages_; }
  int64_t out_of_order() const { return out_of_order_; }
  v1::JobState last_state() const { return last_state_; }

 private:
  WatchBoard* board_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::Job job_;
  Clock::time_point start_;
  grpc::Status status_;
  int64_t messages_ = 0, out_of_order_ = 0, last_version_ = -1;
  v1::JobState last_state_ = v1::JOB_STATE_UNSPECIFIED;
};

// The watchers, spread over a few connections; `stubs` must outlive their streams.
std::vector<std::unique_ptr<Watcher>> StartWatchers(
    const std::string& address, const std::string& job_id, int count,
    std::chrono::system_clock::time_point deadline, WatchBoard* board,
    std::vector<std::unique_ptr<v1::CalibrationService::Stub>>* stubs) {
  for (int i = 0; i < 4; ++i)
    stubs->push_back(v1::CalibrationService::NewStub(NewChannel(address)));
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < count; ++i) {
    watchers.push_back(std::make_unique<Watcher>(board));
    watchers.back()->Start((*stubs)[i % stubs->size()].get(), job_id, deadline);
  }
  return watchers;
}

// What the client threads and the fake worker record, from their own threads.
struct Calls {
  Latencies submit, get, list;
  Latencies worker_lease, worker_complete;
  std::atomic<int64_t> unfinished{0};  // client calls not made before the deadline
  std::atomic<bool> clients_done{false};
};

// One client thread: its Submit/Get/List calls in a seeded random order.
void ClientThread(int index, const std::string& address, const Flags& f,
                  const std::string& watched_id, Clock::time_point deadline, Calls* calls) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  std::vector<int> ops;
  ops.insert(ops.end(), f.submits, 0);
  ops.insert(ops.end(), f.gets, 1);
  ops.insert(ops.end(), f.lists, 2);
  std::mt19937 rng(static_cast<unsigned>(index) + 1);
  std::shuffle(ops.begin(), ops.end(), rng);
  std::vector<std::string> mine = {watched_id};
  for (size_t i = 0; i < ops.size(); ++i) {
    if (Clock::now() >= deadline) {
      calls->unfinished.fetch_add(static_cast<int64_t>(ops.size() - i));
      return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(30));
    if (ops[i] == 0) {
      v1::Job job;
      const v1::SubmitJobRequest r = JobRequest("models/llama-tiny", 4, 32, 4, /*packed=*/false,
                                                absl::StrCat("load-", index, "-", i));
      if (Timed(calls->submit, [&] { return stub->SubmitJob(&ctx, r, &job); }).ok()) {
        mine.push_back(job.id());
      }
    } else if (ops[i] == 1) {
      v1::GetJobRequest r;
      r.set_job_id(mine[std::uniform_int_distribution<size_t>(0, mine.size() - 1)(rng)]);
      v1::Job job;
      Timed(calls->get, [&] { return stub->GetJob(&ctx, r, &job); });
    } else {
      v1::ListJobsRequest r;
      r.set_page_size(50);
      if (i % 2) r.set_state(v1::JOB_PENDING);
      v1::ListJobsResponse resp;
      Timed(calls->list, [&] { return stub->ListJobs(&ctx, r, &resp); });
    }
  }
}

// Runs the client threads to their end; returns the seconds since `start`.
double RunClients(const Flags& f, const std::string& address, const std::string& watched_id,
                  Clock::time_point start, Clock::time_point deadline, Calls* calls) {
  std::vector<std::thread> clients;
  for (int i = 0; i < f.client_threads; ++i) {
    clients.emplace_back(ClientThread, i, address, std::cref(f), watched_id, deadline, calls);
  }
  for (std::thread& t : clients) t.join();
  return Seconds(Clock::now() - start);
}

// The fake worker: leases and completes the watched job's shards one by one, paced
// so changes keep coming while the clients run; the last shard waits for them.
void DriveWatchedJob(const Flags& f, const std::string& address, const v1::Job& watched,
                     const PreparedReport& report, Clock::time_point deadline, WatchBoard* board,
                     Calls* calls) {
  auto w = RegisterFakeWorker(address, "control-fake-worker");
  if (!w.ok()) {
    calls->worker_complete.AddError(std::string(w.status().message()));
    return;
  }
  size_t changes = 0;  // calls that changed the watched job so far
  auto mark_change = [&] {
    if (changes < board->change_start_ns.size()) {
      board->change_start_ns[changes].store(SteadyNs(Clock::now()));
    }
    ++changes;
  };
  for (int k = 0; k < f.watched_shards && Clock::now() < deadline; ++k) {
    if (k == f.watched_shards - 1) {
      while (!calls->clients_done.load() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } else if (!calls->clients_done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(30));
    v1::LeaseTaskRequest lr;
    lr.set_worker_id(w->id);
    lr.set_loaded_model(watched.resolved_model());
    v1::LeaseTaskResponse lease;
    mark_change();
    if (!Timed(calls->worker_lease, [&] { return w->stub->LeaseTask(&ctx, lr, &lease); }).ok())
      continue;
    if (!lease.has_task() || lease.task().job_id() != watched.id()) {
      calls->worker_lease.AddError(absl::StrCat("LeaseTask gave no task of the watched job (got \"",
                                                lease.task().job_id(), "\")"));
      break;
    }
    v1::CompleteTaskResponse resp;
    int64_t sent = 0;
    mark_change();
    Timed(calls->worker_complete, [&] {
      return SendReport(*w->generic, HeaderFor(*w, lease.task(), report.rows), report, 30, &resp,
                        &sent);
    });
  }
}

// The job is final once the worker is done: every stream should end by itself; the
// ones that do not are cancelled. Returns whether all ended.
bool EndStreams(WatchBoard& board, const std::vector<std::unique_ptr<Watcher>>& watchers) {
  if (AwaitBoard(board, AllDone, absl::Seconds(15))) return true;
  for (const auto& w : watchers) w->Cancel();
  return AwaitBoard(board, AllDone, absl::Seconds(15));
}

// Folds the calls' and streams' latencies into `res`; returns the fake worker's
// LeaseTask figures (printed, not kept in ControlResult).
Summary SummarizeCalls(const Calls& calls, const WatchBoard& board, ControlResult* res) {
  res->submit = calls.submit.Summarize();
  res->get = calls.get.Summarize();
  res->list = calls.list.Summarize();
  res->watch_open = board.open.Summarize();
  res->watch_delivery = board.delivery.Summarize();
  res->worker_complete = calls.worker_complete.Summarize();
  const Summary lease = calls.worker_lease.Summarize();
  res->errors += res->submit.errors + res->get.errors + res->list.errors +
                 res->worker_complete.errors + lease.errors;
  return lease;
}

// What the ended streams saw.
struct StreamTally {
  int64_t messages = 0;
  int64_t min_messages = INT64_MAX;
  int bad = 0, reordered = 0;
  std::string first_bad;
};

// A good stream ended OK, saw the job CALIBRATED, and had a change to deliver.
StreamTally TallyStreams(const std::vector<std::unique_ptr<Watcher>>& watchers) {
  StreamTally t;
  for (const auto& w : watchers) {
    t.messages += w->messages();
    t.min_messages = std::min(t.min_messages, w->messages());
    t.reordered += w->out_of_order() > 0;
    const bool good =
        w->status().ok() && w->last_state() == v1::JOB_CALIBRATED && w->messages() >= 2;
    if (!good) {
      ++t.bad;
      if (t.first_bad.empty()) {
        t.first_bad =
            absl::StrCat("status ", w->status().error_code(), " \"", w->status().error_message(),
                         "\", last state ", v1::JobState_Name(w->last_state()), ", ", w->messages(),
                         " messages");
      }
    }
  }
  return t;
}

// The checks that need the coordinator after the load: the watched job finished
// with every sample, and no client ran out of time.
void CheckOutcome(const Flags& f, const std::string& address, const std::string& watched_id,
                  int64_t unfinished, ControlResult* res) {
  auto final_job = GetJob(address, watched_id);
  if (!final_job.ok() || final_job->state() != v1::JOB_CALIBRATED ||
      final_job->progress().samples_done() != f.watched_shards) {
    ++res->errors;
    std::printf("  FAILED: watched job not CALIBRATED with %d samples: %s\n", f.watched_shards,
                final_job.ok() ? final_job->ShortDebugString().c_str()
                               : std::string(final_job.status().message()).c_str());
  }
  if (unfinished > 0) {
    ++res->errors;
    std::printf("  FAILED: %lld client calls not made within the %.0f s cap\n",
                static_cast<long long>(unfinished), f.phase_seconds);
  }
}

void PrintFigures(const Flags& f, const ControlResult& res, const Summary& worker_lease,
                  const StreamTally& streams, double client_seconds) {
  PrintSummary("SubmitJob", res.submit);
  PrintSummary("GetJob", res.get);
  PrintSummary("ListJobs (page 50)", res.list);
  PrintSummary("WatchJob first message", res.watch_open);
  PrintSummary("WatchJob change->stream", res.watch_delivery);
  PrintSummary("fake worker LeaseTask", worker_lease);
  PrintSummary("fake worker CompleteTask", res.worker_complete);
  const int64_t calls = res.submit.count + res.get.count + res.list.count;
  std::printf("  client calls: %lld in %.2f s = %.0f calls/s (%d threads)\n",
              static_cast<long long>(calls), client_seconds,
              static_cast<double>(calls) / client_seconds, f.client_threads);
  std::printf(
      "  WatchJob: %d streams, %lld messages (at least %lld per stream), %d bad streams, "
      "%d with versions out of order%s%s\n",
      f.watchers, static_cast<long long>(res.watch_messages),
      static_cast<long long>(streams.min_messages == INT64_MAX ? 0 : streams.min_messages),
      streams.bad, streams.reordered,
      streams.first_bad.empty() ? "" : "; first bad: ", streams.first_bad.c_str());
  std::printf("  machine: %u cores, load average (1 min) %.1f before, %.1f after\n",
              std::thread::hardware_concurrency(), res.load_before, res.load_after);
}

// Folds the streams' outcome into `res`. Streams that did not end are leaked, not
// destroyed: gRPC may still call their reactors.
StreamTally CollectStreams(bool all_done, std::vector<std::unique_ptr<Watcher>>& watchers,
                           ControlResult* res) {
  StreamTally streams;
  if (!all_done) {
    ++res->errors;
    std::printf("  FAILED: WatchJob streams did not end; leaking their reactors\n");
    for (auto& w : watchers) w.release();  // gRPC may still call them
  } else {
    streams = TallyStreams(watchers);
    res->watch_messages = streams.messages;
  }
  res->errors += streams.bad + streams.reordered;
  return streams;
}

}  // namespace

ControlResult RunControlPlane(const Flags& f, const std::string& work) {
  ControlResult res;
  res.ran = true;
  std::printf(
      "\n== control plane: %d client threads x (%d SubmitJob, %d GetJob, %d ListJobs), "
      "%d WatchJob streams ==\n",
      f.client_threads, f.submits, f.gets, f.lists, f.watchers);
  auto fail = [&](const std::string& what) {
    std::printf("  FAILED: %s\n", what.c_str());
    ++res.errors;
    return res;
  };
  auto coordinator = CoordinatorProcess::Start(f, work + "/control", {f.data_dir}, 0);
  if (!coordinator.ok()) return fail(std::string(coordinator.status().message()));
  const std::string address = (*coordinator)->address();
  std::printf("  coordinator pid %d on %s\n", (*coordinator)->pid(), address.c_str());
  res.load_before = LoadAverage();

  auto report = BuildReport(f.data_dir + "/models/llama-tiny", 10, 1);
  if (!report.ok()) return fail(std::string(report.status().message()));
  auto watched = Submit(address, JobRequest("models/llama-tiny", f.watched_shards, 32, 1,
                                            /*packed=*/true, "watched"));
  if (!watched.ok()) return fail(std::string(watched.status().message()));

  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::microseconds(static_cast<int64_t>(f.phase_seconds * 1e6));
  WatchBoard board(f.watchers, watched->version(), 2 * f.watched_shards);
  std::vector<std::unique_ptr<v1::CalibrationService::Stub>> watch_stubs;
  std::vector<std::unique_ptr<Watcher>> watchers = StartWatchers(
      address, watched->id(), f.watchers, DeadlineIn(f.phase_seconds + 15), &board, &watch_stubs);
  AwaitBoard(board, AllOpenedOrDone, absl::Seconds(30));

  Calls calls;
  std::thread worker(
      [&] { DriveWatchedJob(f, address, *watched, *report, deadline, &board, &calls); });
  const double client_seconds = RunClients(f, address, watched->id(), start, deadline, &calls);
  calls.clients_done.store(true);
  worker.join();

  const bool all_done = EndStreams(board, watchers);
  res.seconds = Seconds(Clock::now() - start);
  res.load_after = LoadAverage();
  const Summary wl = SummarizeCalls(calls, board, &res);
  res.watchers = f.watchers;

  const StreamTally streams = CollectStreams(all_done, watchers, &res);
  CheckOutcome(f, address, watched->id(), calls.unfinished.load(), &res);
  PrintFigures(f, res, wl, streams, client_seconds);
  if (!(*coordinator)->Stop()) {
    ++res.errors;
    std::printf("  FAILED: the coordinator did not stop cleanly:\n%s\n",
                (*coordinator)->LogTail().c_str());
  }
  std::printf("  control plane: %s (%lld errors)\n", res.errors == 0 ? "OK" : "FAILED",
              static_cast<long long>(res.errors));
  return res;
}

}  // namespace qcal::bench
