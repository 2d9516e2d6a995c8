#include "bench/load/data_plane.h"

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/load/coordinator_process.h"
#include "bench/load/fake_worker.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/job_state.h"
#include "proto/qcal/v1/worker.grpc.pb.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;

// Reads qcal_shard_merge_seconds from the coordinator's /metrics.
void ReadMergeMetric(int port, DataResult* r) {
  absl::StatusOr<std::string> text = HttpGet(port, "/metrics");
  if (!text.ok()) return;
  double sum = 0, count = 0;
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative)
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t space = line.rfind(' ');
    if (line.rfind("qcal_shard_merge_seconds", 0) != 0 || space == std::string::npos) continue;
    const double v = std::strtod(line.c_str() + space + 1, nullptr);
    if (line.rfind("qcal_shard_merge_seconds_sum", 0) == 0) sum = v;
    if (line.rfind("qcal_shard_merge_seconds_count", 0) == 0) count = v;
    const size_t le = line.find("le=\"");
    if (line.rfind("qcal_shard_merge_seconds_bucket", 0) == 0 && le != std::string::npos) {
      const std::string bound = line.substr(le + 4, line.find('"', le + 4) - le - 4);
      buckets.emplace_back(bound == "+Inf" ? INFINITY : std::strtod(bound.c_str(), nullptr), v);
    }
  }
  if (count <= 0) return;
  r->server_merge_mean = sum / count;
  std::sort(buckets.begin(), buckets.end());
  for (const auto& [le, cumulative] : buckets) {
    if (cumulative >= 0.99 * count) {
      r->server_merge_p99 = std::isinf(le) ? "> 10 s" : absl::StrCat("<= ", le * 1e3, " ms");
      break;
    }
  }
}

// Every linear's input count must be rows * reports (each report merged exactly once).
// Times the read, which makes RocksDB merge every pending operand.
void ReadBack(const std::string& address, const std::string& job_id, const PreparedReport& report,
              int64_t reports, double timeout_s, DataResult* r) {
  auto stub = v1::CalibrationService::NewStub(NewChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(timeout_s));
  v1::GetJobStatsRequest req;
  req.set_job_id(job_id);
  req.set_allow_partial(true);
  const auto start = Clock::now();
  auto reader = stub->GetJobStats(&ctx, req);
  v1::JobStatsChunk chunk;
  int64_t linears = 0, wrong = 0;
  while (reader->Read(&chunk)) {
    for (const v1::LinearStatsProto& l : chunk.linears()) {
      ++linears;
      wrong += l.input().count() != report.rows * reports;
    }
  }
  grpc::Status s = reader->Finish();
  r->readback_s = Seconds(Clock::now() - start);
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::printf("  note: reading the statistics back did not finish within %.0f s\n", timeout_s);
    r->readback_s = -1;
  } else if (!s.ok() || linears != report.linears || wrong != 0) {
    ++r->errors;
    std::printf(
        "  FAILED: read-back: status \"%s\", %lld linears (want %lld), %lld with a count "
        "other than %lld\n",
        s.error_message().c_str(), static_cast<long long>(linears),
        static_cast<long long>(report.linears), static_cast<long long>(wrong),
        static_cast<long long>(report.rows * reports));
  }
}

// Builds the phase's report and prints its shape.
absl::StatusOr<PreparedReport> PrepareReport(const Flags& f, const std::string& model,
                                             uint64_t seed, DataResult* res) {
  const std::string model_dir = fs::path(model).is_absolute() ? model : f.data_dir + "/" + model;
  const auto build_start = Clock::now();
  absl::StatusOr<PreparedReport> report = BuildReport(model_dir, f.report_rows, seed);
  if (!report.ok()) return report.status();
  res->report_mb = static_cast<double>(report->bytes) / 1e6;
  res->mean_buckets = report->mean_buckets;
  res->max_buckets = report->max_buckets;
  std::printf(
      "  report: %lld linears, %lld channels, %d rows, sketch buckets mean %.0f max %lld, "
      "%.2f MB in %zu chunks (built in %.1f s)\n",
      static_cast<long long>(report->linears), static_cast<long long>(report->channels),
      f.report_rows, report->mean_buckets, static_cast<long long>(report->max_buckets),
      res->report_mb, report->chunks.size(), Seconds(Clock::now() - build_start));
  return report;
}

absl::StatusOr<std::vector<FakeWorker>> RegisterFakeWorkers(const std::string& address,
                                                            const std::string& name, int count) {
  std::vector<FakeWorker> fakes;
  for (int i = 0; i < count; ++i) {
    auto w = RegisterFakeWorker(address, absl::StrCat(name, "-", i));
    if (!w.ok()) return w.status();
    fakes.push_back(std::move(*w));
  }
  return fakes;
}

// What the fake workers and the prober share while they load the coordinator.
struct Load {
  const PreparedReport* report = nullptr;
  std::string job_id, resolved_model;
  Clock::time_point deadline;
  Latencies complete, lease, probe;
  std::atomic<int64_t> ok_reports{0}, bytes{0};
  std::atomic<bool> finished{false}, workers_done{false};
};

// One fake worker: lease, report, repeat, until the job is final or time is up.
void WorkerLoop(FakeWorker* w, Load* load) {
  while (!load->finished.load() && Clock::now() < load->deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(30));
    v1::LeaseTaskRequest lr;
    lr.set_worker_id(w->id);
    lr.set_loaded_model(load->resolved_model);
    v1::LeaseTaskResponse l;
    if (!Timed(load->lease, [&] { return w->stub->LeaseTask(&ctx, lr, &l); }).ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (!l.has_task()) {  // all shards leased: the others are finishing
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    v1::CompleteTaskResponse resp;
    int64_t sent = 0;
    const grpc::Status s = Timed(load->complete, [&] {
      return SendReport(*w->generic, HeaderFor(*w, l.task(), load->report->rows), *load->report,
                        kMaxPhaseSeconds, &resp, &sent);
    });
    if (s.ok()) {
      load->ok_reports.fetch_add(1);
      load->bytes.fetch_add(sent);
      if (v1::IsFinalJobState(resp.job_state())) load->finished.store(true);
    }
  }
}

// Runs the fake workers to their end, with a client polling GetJob every 100 ms
// meanwhile: what users see while reports merge.
void RunLoad(const std::string& address, std::vector<FakeWorker>& fakes, Load* load) {
  std::vector<std::thread> threads;
  for (FakeWorker& w : fakes) threads.emplace_back(WorkerLoop, &w, load);
  std::thread prober([&] {
    auto stub = v1::CalibrationService::NewStub(NewChannel(address));
    while (!load->workers_done.load()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(DeadlineIn(30));
      v1::GetJobRequest r;
      r.set_job_id(load->job_id);
      v1::Job j;
      Timed(load->probe, [&] { return stub->GetJob(&ctx, r, &j); });
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  for (std::thread& t : threads) t.join();
  load->workers_done.store(true);
  prober.join();
}

// The coordinator's and this process's resource counters at the window's start.
struct UsageMark {
  std::map<std::string, double> threads;
  double cpu = 0, own = 0;
  int64_t written = 0;
};

UsageMark MarkUsage(pid_t pid) {
  UsageMark m;
  m.threads = ThreadCpuSeconds(pid);
  m.cpu = ProcessCpuSeconds(pid);
  m.own = OwnCpuSeconds();
  m.written = WrittenBytes(pid);
  return m;
}

// Fills the window's machine and resource figures of `res`, relative to `before`.
void RecordUsage(pid_t pid, const UsageMark& before, DataResult* res) {
  res->load_after = LoadAverage();
  res->cpu_pressure = CpuPressure();
  res->written_mb = static_cast<double>(WrittenBytes(pid) - before.written) / 1e6;
  res->coordinator_cpu_s = ProcessCpuSeconds(pid) - before.cpu;
  res->own_cpu_s = OwnCpuSeconds() - before.own;
  std::map<std::string, double> by_thread = ThreadCpuSeconds(pid);
  for (auto& [thread, s] : by_thread) {
    auto it = before.threads.find(thread);
    s -= it == before.threads.end() ? 0 : it->second;
  }
  res->threads.assign(by_thread.begin(), by_thread.end());
  std::sort(res->threads.begin(), res->threads.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
}

void SummarizeLoad(const Load& load, DataResult* res) {
  res->reports = load.ok_reports.load();
  res->complete = load.complete.Summarize();
  res->lease = load.lease.Summarize();
  res->probe = load.probe.Summarize();
  res->errors += res->complete.errors + res->lease.errors + res->probe.errors;
  res->reports_per_s = static_cast<double>(res->reports) / res->window_s;
  res->mb_per_s = static_cast<double>(load.bytes.load()) / 1e6 / res->window_s;
}

// The job must count exactly the merged reports, and reading them back must agree.
void CheckMerged(const std::string& address, const std::string& job_id,
                 const PreparedReport& report, double timeout_s, DataResult* res) {
  auto final_job = GetJob(address, job_id);
  if (!final_job.ok() || final_job->progress().samples_done() != res->reports) {
    ++res->errors;
    std::printf("  FAILED: the job does not count %lld merged samples: %s\n",
                static_cast<long long>(res->reports),
                final_job.ok() ? final_job->progress().ShortDebugString().c_str()
                               : std::string(final_job.status().message()).c_str());
  }
  ReadBack(address, job_id, report, res->reports, timeout_s, res);
}

void PrintCpuFigures(const DataResult& res) {
  std::printf("  CPU: coordinator %.2f s (%.1f ms/report, %.0f%% of one core), load_test %.2f s\n",
              res.coordinator_cpu_s,
              1e3 * res.coordinator_cpu_s / std::max<int64_t>(1, res.reports),
              100 * res.coordinator_cpu_s / res.window_s, res.own_cpu_s);
  std::printf(
      "  machine: %u cores, load average (1 min) %.1f before, %.1f after; CPU pressure %.0f%%\n",
      std::thread::hardware_concurrency(), res.load_before, res.load_after, res.cpu_pressure);
  std::printf("  coordinator write(): %.0f MB in the window (%.1f x the reports' bytes)\n",
              res.written_mb, res.written_mb / std::max(1e-9, res.mb_per_s * res.window_s));
  std::printf("  coordinator CPU by thread:");
  for (size_t i = 0; i < res.threads.size() && i < 6; ++i) {
    if (res.threads[i].second < 0.005) break;
    std::printf(" %s %.2f s;", res.threads[i].first.c_str(), res.threads[i].second);
  }
  std::printf("\n");
}

void PrintFigures(const DataResult& res) {
  PrintSummary("LeaseTask", res.lease);
  PrintSummary("CompleteTask (client)", res.complete);
  PrintSummary("GetJob meanwhile (10/s)", res.probe);
  std::printf("  %lld reports in %.2f s: %.2f reports/s, %.1f MB/s\n",
              static_cast<long long>(res.reports), res.window_s, res.reports_per_s, res.mb_per_s);
  if (res.server_merge_mean >= 0) {
    std::printf("  coordinator qcal_shard_merge_seconds: mean %.2f ms, p99 %s\n",
                res.server_merge_mean * 1e3, res.server_merge_p99.c_str());
  }
  PrintCpuFigures(res);
  if (res.readback_s >= 0) {
    std::printf(
        "  read-back of the merged statistics (GetJobStats, merges pending operands): "
        "%.2f s\n",
        res.readback_s);
  }
  std::printf("  database on disk: %.0f MB\n", res.db_disk_mb);
  std::printf(
      "  at the default %d s report interval one coordinator absorbs %.0f workers "
      "with %s-shaped reports\n",
      kDefaultReportIntervalSeconds, res.reports_per_s * kDefaultReportIntervalSeconds,
      res.name.c_str());
}

}  // namespace

DataResult RunDataPlane(const Flags& f, const std::string& work, const std::string& name,
                        const std::string& model, const std::vector<std::string>& roots,
                        int workers, int max_reports, uint64_t seed) {
  DataResult res;
  res.ran = true;
  res.name = name;
  res.workers = workers;
  std::printf("\n== data plane: %s reports, %d fake workers, at most %d reports / %.0f s ==\n",
              name.c_str(), workers, max_reports, f.phase_seconds);
  auto fail = [&](const std::string& what) {
    std::printf("  FAILED: %s\n", what.c_str());
    ++res.errors;
    return res;
  };
  auto report = PrepareReport(f, model, seed, &res);
  if (!report.ok()) return fail(std::string(report.status().message()));
  int metrics_port = 0;
  if (f.metrics) {
    auto p = FreeLoopbackPort();
    if (p.ok()) metrics_port = *p;
  }
  const std::string dir = work + "/data-" + name;
  auto coordinator = CoordinatorProcess::Start(f, dir, roots, metrics_port);
  if (!coordinator.ok()) return fail(std::string(coordinator.status().message()));
  const std::string address = (*coordinator)->address();
  const pid_t pid = (*coordinator)->pid();
  std::printf("  coordinator pid %d on %s\n", pid, address.c_str());
  auto job = Submit(address, JobRequest(model, max_reports, 512, 1, /*packed=*/true, name));
  if (!job.ok()) return fail(std::string(job.status().message()));
  auto fakes = RegisterFakeWorkers(address, name, workers);
  if (!fakes.ok()) return fail(std::string(fakes.status().message()));

  Load load;
  load.report = &*report;
  load.job_id = job->id();
  load.resolved_model = job->resolved_model();
  const UsageMark before = MarkUsage(pid);
  res.load_before = LoadAverage();
  const auto start = Clock::now();
  load.deadline = start + std::chrono::microseconds(static_cast<int64_t>(f.phase_seconds * 1e6));
  RunLoad(address, *fakes, &load);
  res.window_s = Seconds(Clock::now() - start);
  RecordUsage(pid, before, &res);
  SummarizeLoad(load, &res);
  if (metrics_port > 0) ReadMergeMetric(metrics_port, &res);
  CheckMerged(address, job->id(), *report, f.phase_seconds, &res);
  res.db_disk_mb = static_cast<double>(TreeDiskBytes(dir + "/db")) / 1e6;

  PrintFigures(res);
  if (!(*coordinator)->Stop()) {
    ++res.errors;
    std::printf("  FAILED: the coordinator did not stop cleanly:\n%s\n",
                (*coordinator)->LogTail().c_str());
  }
  if (!f.keep) {
    std::error_code ec;
    fs::remove_all(dir + "/db", ec);  // can be gigabytes
  }
  return res;
}

absl::Status WriteSparse7bModel(const std::string& dir, int64_t* apparent_bytes) {
  fs::create_directories(dir);
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"hidden_size", 4096},
      {"intermediate_size", 11008},
      {"num_hidden_layers", 32},
      {"num_attention_heads", 32},
      {"num_key_value_heads", 32},
      {"vocab_size", 32000},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  absl::StatusOr<ModelConfig> parsed = LoadModelConfig(dir);
  if (!parsed.ok()) return parsed.status();
  nlohmann::ordered_json header;
  uint64_t offset = 0;
  for (const ExpectedTensor& t : ExpectedTensors(*parsed)) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t bytes = numel * 2;  // BF16
    header[t.name] = {
        {"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const std::string path = dir + "/model.safetensors";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const uint64_t len = h.size();  // little-endian on every machine we run on
    f.write(reinterpret_cast<const char*>(&len), sizeof(len));
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  std::error_code ec;
  fs::resize_file(path, 8 + h.size() + offset, ec);  // a hole: no blocks allocated
  if (ec) return absl::InternalError(absl::StrCat("cannot extend ", path, ": ", ec.message()));
  *apparent_bytes = static_cast<int64_t>(8 + h.size() + offset);
  return CheckModelFiles(dir, *parsed);
}

}  // namespace qcal::bench
