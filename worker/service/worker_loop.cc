#include "worker/service/worker_loop.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/stats/stats_proto.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/worker.grpc.pb.h"
#include "worker/service/export_task.h"
#include "worker/text/sampler.h"

namespace qcal {
namespace {

void Log(const std::string& name, const std::string& msg) {
  std::cerr << "qcal-worker[" << name << "]: " << msg << std::endl;
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<text::SamplingOptions> SamplingFromProto(const v1::SamplingOptions& p) {
  text::SamplingOptions o;
  o.num_samples = p.num_samples();
  o.seq_len = p.seq_len();
  auto mode = text::ParseSamplingMode(p.mode());
  if (!mode.ok()) return mode.status();
  o.mode = *mode;
  auto order = text::ParseSamplingOrder(p.order());
  if (!order.ok()) return order.status();
  o.order = *order;
  o.seed = p.seed();
  o.skip_docs = p.skip_docs();
  o.skip_bad_lines = p.skip_bad_lines();
  o.add_special_tokens = !p.no_special_tokens();
  absl::Status st = text::ValidateSamplingOptions(o);
  if (!st.ok()) return st;
  return o;
}

// Statuses that retrying on another worker cannot fix.
bool Retryable(const absl::Status& s) {
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

class Worker {
 public:
  Worker(const WorkerLoopOptions& o, const std::atomic<int>* stop) : o_(o), stop_(stop) {
    name_ = o.name;
    if (name_.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof(host) - 1);
      name_ = absl::StrCat(host, "-", getpid());
    }
  }

  int Run() {
    absl::Status st = Connect();
    if (!st.ok()) {
      Log(name_, std::string(st.message()));
      return 1;
    }
    int tasks = 0;
    int backoff_ms = 200;
    while (stop_->load() == 0) {
      if (worker_id_.empty()) {
        st = Register();
        if (!st.ok()) {
          if (st.code() == absl::StatusCode::kUnauthenticated) {
            Log(name_, absl::StrCat("cannot register: ", st.message()));
            return 1;
          }
          Log(name_, absl::StrCat("coordinator not reachable (", st.message(), "); retrying"));
          Sleep(backoff_ms);
          backoff_ms = std::min(backoff_ms * 2, 5000);
          continue;
        }
        backoff_ms = 200;
      }
      v1::LeaseTaskRequest req;
      req.set_worker_id(worker_id_);
      req.set_loaded_model(engine_model_);
      v1::LeaseTaskResponse resp;
      grpc::ClientContext ctx;
      Prepare(ctx, 30);
      grpc::Status gs = stub_->LeaseTask(&ctx, req, &resp);
      if (!gs.ok()) {
        if (gs.error_code() == grpc::StatusCode::NOT_FOUND) {
          worker_id_.clear();  // the coordinator forgot us (restart): register again
          continue;
        }
        Log(name_, absl::StrCat("LeaseTask: ", gs.error_message()));
        Sleep(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, 5000);
        continue;
      }
      backoff_ms = 200;
      if (!resp.has_task()) {
        Sleep(std::max(50, resp.retry_after_ms()));
        continue;
      }
      RunTask(resp.task());
      if (o_.max_tasks > 0 && ++tasks >= o_.max_tasks) break;
    }
    Log(name_, "stopped");
    return 0;
  }

 private:
  absl::Status Connect() {
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!o_.tls_ca.empty()) {
      std::ifstream f(o_.tls_ca);
      if (!f) return absl::NotFoundError(absl::StrCat("cannot read --tls-ca ", o_.tls_ca));
      std::stringstream ss;
      ss << f.rdbuf();
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ss.str();
      creds = grpc::SslCredentials(ssl);
    }
    if (!o_.token_file.empty()) {
      std::ifstream f(o_.token_file);
      if (!f) return absl::NotFoundError(absl::StrCat("cannot read --token-file ", o_.token_file));
      std::stringstream ss;
      ss << f.rdbuf();
      token_ = std::string(absl::StripAsciiWhitespace(ss.str()));
    }
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(o_.coordinator, creds, args);
    stub_ = v1::WorkerService::NewStub(channel_);
    return absl::OkStatus();
  }

  void Prepare(grpc::ClientContext& ctx, int timeout_s) {
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
    if (timeout_s > 0) {
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
    }
  }

  absl::Status Register() {
    v1::RegisterWorkerRequest req;
    req.set_name(name_);
    req.set_device(o_.engine.device);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Prepare(ctx, 10);
    grpc::Status gs = stub_->RegisterWorker(&ctx, req, &resp);
    if (!gs.ok()) return FromGrpc(gs);
    worker_id_ = resp.worker_id();
    heartbeat_ms_ = std::max(100, resp.heartbeat_interval_ms());
    Log(name_, absl::StrCat("registered as ", worker_id_, " with ", o_.coordinator));
    return absl::OkStatus();
  }

  void Sleep(int ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (stop_->load() == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // The engine for `model`, reloaded only when the model changes.
  absl::Status EnsureEngine(const std::string& model, int batch_size) {
    if (engine_ && engine_model_ == model && engine_batch_ == batch_size) return absl::OkStatus();
    EngineOptions eo = o_.engine;
    eo.batch_size = batch_size;
    engine_.reset();
    auto e = CalibrationEngine::Load(model, eo);
    if (!e.ok()) return e.status();
    engine_ = std::move(e).value();
    engine_model_ = model;
    engine_batch_ = batch_size;
    return absl::OkStatus();
  }

  absl::Status EnsureSampler(const v1::Task& task) {
    const std::string key = absl::StrCat(task.model(), "\n", task.corpus(), "\n",
                                         task.sampling().SerializeAsString());
    if (sampler_ && sampler_key_ == key) return absl::OkStatus();
    sampler_.reset();
    auto opts = SamplingFromProto(task.sampling());
    if (!opts.ok()) return opts.status();
    auto s = text::OpenCorpusSampler(task.model(), task.corpus(), *opts);
    if (!s.ok()) return s.status();
    sampler_ = std::make_unique<text::CorpusSampler>(std::move(s).value());
    sampler_key_ = key;
    return absl::OkStatus();
  }

  void RunTask(const v1::Task& task) {
    const auto start = std::chrono::steady_clock::now();
    std::atomic<bool> cancelled{false};
    std::atomic<int64_t> samples_done{0};
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    // Heartbeats extend the lease while the task runs.
    std::thread heartbeat([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!cv.wait_for(lock, std::chrono::milliseconds(heartbeat_ms_), [&] { return finished; })) {
        v1::HeartbeatRequest req;
        req.set_worker_id(worker_id_);
        req.set_task_id(task.task_id());
        req.set_lease_id(task.lease_id());
        req.set_samples_done(samples_done.load());
        v1::HeartbeatResponse resp;
        grpc::ClientContext ctx;
        Prepare(ctx, 10);
        lock.unlock();
        grpc::Status gs = stub_->Heartbeat(&ctx, req, &resp);
        lock.lock();
        if (gs.ok() && resp.cancelled()) {
          Log(name_, absl::StrCat("task ", task.task_id(), ": cancelled (",
                                  resp.reason().empty() ? "job cancelled" : resp.reason(),
                                  "); stopping"));
          cancelled = true;
        } else if (!gs.ok() && (gs.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                                gs.error_code() == grpc::StatusCode::NOT_FOUND)) {
          Log(name_, absl::StrCat("task ", task.task_id(), ": lease lost (", gs.error_message(), ")"));
          cancelled = true;
        }
      }
    });
    auto stop_heartbeat = [&] {
      {
        std::lock_guard<std::mutex> lock(mu);
        finished = true;
      }
      cv.notify_all();
      heartbeat.join();
    };

    stats::StatsSet stats;
    const bool is_export = task.kind() == v1::TASK_EXPORT;
    // An export needs the statistics and the weights' files, not a loaded model.
    absl::Status st = is_export ? absl::OkStatus() : EnsureEngine(task.model(), task.batch_size());
    if (st.ok() && !is_export) st = EnsureSampler(task);
    std::vector<std::vector<int32_t>> samples;
    if (st.ok() && !is_export) {
      auto s = sampler_->sampler->Samples(task.sample_begin(), task.sample_end());
      if (s.ok()) {
        samples = std::move(s).value();
      } else {
        st = s.status();
      }
    }
    auto keep_going = [&](int64_t done) {
      samples_done = done;
      return !cancelled.load() && stop_->load() < 2;
    };
    v1::EvaluateResult eval_result;
    v1::ExportResponse export_result;
    const bool eval = task.kind() == v1::TASK_EVALUATE;
    if (st.ok() && is_export) {
      st = Export(task, &export_result);
      if (cancelled.load() && st.ok()) {
        // The operation was cancelled while the files were written: remove them, so
        // nothing finished-looking stays behind a cancelled export.
        std::error_code ec;
        std::filesystem::remove_all(export_result.output_dir(), ec);
      }
    } else if (st.ok() && eval) {
      st = Evaluate(task, samples, keep_going, &eval_result);
    } else if (st.ok()) {
      st = engine_->Accumulate(samples, &stats, keep_going);
    }
    stop_heartbeat();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (cancelled.load()) return;  // nothing to report: the job or the lease is gone
    if (!st.ok()) {
      const bool handing_back = st.code() == absl::StatusCode::kCancelled && stop_->load() >= 2;
      Fail(task, handing_back ? "worker shutting down; task handed back" : std::string(st.message()),
           handing_back || Retryable(st));
      return;
    }
    if (o_.report_delay_ms > 0) {
      Log(name_, absl::StrCat("task ", task.task_id(), ": done; reporting in ", o_.report_delay_ms,
                              " ms (--debug-report-delay-ms)"));
      std::this_thread::sleep_for(std::chrono::milliseconds(o_.report_delay_ms));
    }
    const google::protobuf::Message* result = nullptr;
    if (eval) result = &eval_result;
    if (is_export) result = &export_result;
    Complete(task, stats, result, static_cast<int64_t>(samples.size()), seconds);
  }

  // Reads the job's statistics (GetTaskStats, under this task's lease) and writes the
  // export.
  absl::Status Export(const v1::Task& task, v1::ExportResponse* out) {
    v1::GetTaskStatsRequest req;
    req.set_worker_id(worker_id_);
    req.set_task_id(task.task_id());
    req.set_lease_id(task.lease_id());
    grpc::ClientContext ctx;
    Prepare(ctx, 600);
    auto reader = stub_->GetTaskStats(&ctx, req);
    v1::StatsSetProto all;
    v1::JobStatsChunk chunk;
    int64_t tokens = 0;
    while (reader->Read(&chunk)) {
      if (!chunk.job_id().empty()) tokens = chunk.tokens();
      for (auto& l : *chunk.mutable_linears()) *all.add_linears() = std::move(l);
    }
    grpc::Status gs = reader->Finish();
    if (!gs.ok()) return FromGrpc(gs);
    auto set = stats::StatsSetFromProto(all);
    if (!set.ok()) return set.status();
    QCAL_RETURN_IF_ERROR(set->AddTokens(tokens));
    ExportTaskOptions options;
    if (o_.export_pause_ms > 0) {
      options.before_rename = [this](const std::string& partial) {
        Log(name_, absl::StrCat("export written to ", partial, "; pausing ", o_.export_pause_ms,
                                " ms before the rename (--debug-export-pause-ms)"));
        std::this_thread::sleep_for(std::chrono::milliseconds(o_.export_pause_ms));
      };
    }
    auto r = RunExportTask(task, *set, options);
    if (!r.ok()) return r.status();
    *out = *std::move(r);
    Log(name_, absl::StrCat("task ", task.task_id(), ": exported ", out->files_size(), " files (",
                            out->bytes(), " bytes) to ", out->output_dir()));
    return absl::OkStatus();
  }

  // One EvaluatePartial per evaluation shard of the task, in order, so the
  // coordinator's sums do not depend on how shards were grouped into tasks.
  absl::Status Evaluate(const v1::Task& task, const std::vector<std::vector<int32_t>>& samples,
                        const ProgressFn& progress, v1::EvaluateResult* out) {
    v1::EvaluateTaskPayload payload;
    if (!task.payload().UnpackTo(&payload)) {
      return absl::InvalidArgumentError("evaluation task without an EvaluateTaskPayload");
    }
    EvalVariant variant = EvalVariant::Float();
    if (!payload.float_baseline()) {
      std::vector<quant::LinearClip> clips;
      for (const auto& l : payload.linears()) {
        clips.push_back({l.name(), l.clip_input(), l.clip_output(),
                         static_cast<float>(l.input_scale()), static_cast<float>(l.output_scale())});
      }
      variant = EvalVariant::W8A8(std::move(clips));
    }
    const int64_t size = std::max(1, task.shard_size());
    const int64_t n = static_cast<int64_t>(samples.size());
    int64_t done_before = 0;
    for (int64_t start = 0; start < n; start += size) {
      const int64_t end = std::min(n, start + size);
      std::vector<std::vector<int32_t>> unit(samples.begin() + start, samples.begin() + end);
      quant::EvalMetrics m;
      absl::Status st = engine_->Evaluate(unit, variant, &m, [&](int64_t d) {
        return progress(done_before + d);
      });
      if (!st.ok()) return st;
      done_before = end;
      v1::EvaluatePartial* p = out->add_shards();
      p->set_hits(m.hits);
      p->set_total(m.total);
      p->set_nll_sum(m.nll_sum);
      p->set_predictions(m.predictions);
    }
    return absl::OkStatus();
  }

  void Fail(const v1::Task& task, const std::string& reason, bool retryable) {
    Log(name_, absl::StrCat("task ", task.task_id(), " failed: ", reason));
    v1::FailTaskRequest req;
    req.set_worker_id(worker_id_);
    req.set_task_id(task.task_id());
    req.set_lease_id(task.lease_id());
    req.set_reason(absl::StrCat(name_, ": ", reason));
    req.set_retryable(retryable);
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    Prepare(ctx, 10);
    grpc::Status gs = stub_->FailTask(&ctx, req, &resp);
    if (!gs.ok()) Log(name_, absl::StrCat("FailTask: ", gs.error_message()));
  }

  void Complete(const v1::Task& task, const stats::StatsSet& stats,
                const google::protobuf::Message* result, int64_t samples, double seconds) {
    v1::StatsSetProto proto;
    stats::ToProto(stats, &proto);
    // Retry transient failures (e.g. a coordinator restart) for up to a minute: the
    // lease survives a restart, and a report that did land is ALREADY_EXISTS.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (int attempt = 0; std::chrono::steady_clock::now() < give_up; ++attempt) {
      grpc::ClientContext ctx;
      Prepare(ctx, 300);
      v1::CompleteTaskResponse resp;
      auto writer = stub_->CompleteTask(&ctx, &resp);
      v1::CompleteTaskChunk chunk;
      v1::CompleteTaskHeader* h = chunk.mutable_header();
      h->set_worker_id(worker_id_);
      h->set_task_id(task.task_id());
      h->set_lease_id(task.lease_id());
      h->set_samples(samples);
      h->set_tokens(stats.tokens());
      h->set_compute_seconds(seconds);
      if (result != nullptr) chunk.mutable_result()->PackFrom(*result);
      bool ok = true;
      for (const auto& l : proto.linears()) {
        *chunk.add_linears() = l;
        if (chunk.ByteSizeLong() > (2u << 20)) {
          ok = ok && writer->Write(chunk);
          chunk.Clear();
        }
      }
      if (chunk.has_header() || chunk.linears_size() > 0) ok = ok && writer->Write(chunk);
      writer->WritesDone();
      grpc::Status gs = writer->Finish();
      if (gs.ok() || gs.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        Log(name_, absl::StrCat("task ", task.task_id(), ": ", samples, " samples, ",
                                stats.tokens(), " tokens in ", seconds, " s, reported"));
        return;
      }
      const grpc::StatusCode c = gs.error_code();
      if (c != grpc::StatusCode::UNAVAILABLE && c != grpc::StatusCode::DEADLINE_EXCEEDED &&
          c != grpc::StatusCode::INTERNAL && c != grpc::StatusCode::UNKNOWN) {
        // The lease is gone or the report was refused: retrying cannot help.
        Log(name_, absl::StrCat("task ", task.task_id(), ": report refused: ", gs.error_message()));
        return;
      }
      Log(name_, absl::StrCat("task ", task.task_id(), ": report failed (", gs.error_message(),
                              "); retrying"));
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 200 << std::min(attempt, 4))));
    }
    Log(name_, absl::StrCat("task ", task.task_id(), ": gave up reporting; the lease will expire"));
  }

  const WorkerLoopOptions o_;
  const std::atomic<int>* stop_;
  std::string name_;
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string worker_id_;
  int heartbeat_ms_ = 10000;
  std::unique_ptr<CalibrationEngine> engine_;
  std::string engine_model_;
  int engine_batch_ = 0;
  std::unique_ptr<text::CorpusSampler> sampler_;
  std::string sampler_key_;
};

}  // namespace

int RunWorkerLoop(const WorkerLoopOptions& options, const std::atomic<int>* stop_requests) {
  Worker w(options, stop_requests);
  return w.Run();
}

}  // namespace qcal
