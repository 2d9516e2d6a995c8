// Fuzz target: the coordinator's request validation (server/core/coordinator.h)
// over the in-memory store, without a network: what any client can send
// (SubmitJob, Evaluate, Export) and what any worker can report (CompleteTask).
//
// Input: byte 0 picks the call (mod 6), the rest is one serialized message
// (inputs that do not parse are ignored, as gRPC would refuse them):
//   0  v1::SubmitJobRequest
//   1  v1::EvaluateRequest  (of the calibrated job)
//   2  v1::ExportRequest    (of the calibrated job)
//   3  v1::CompleteTaskChunk reporting a calibration task
//   4  v1::CompleteTaskChunk reporting an evaluation task
//   5  v1::CompleteTaskChunk reporting an export task
// Ids are random per process, so requests name them by placeholder: a job_id "@"
// is the calibrated job's; in a report, worker_id / task_id / lease_id "@" are the
// current lease's, samples 0 is the task's sample count, and an ExportResponse
// output_dir "@" is the export's folder. For 3-5 the report is sent for up to four
// leases in a row (one worker, the clock one second further each time) while they
// succeed, so progress, merging and finishing run too; then the results are read
// back (statistics, operations) and the remaining leases expire.
//
// State, made once per process: a data root (a copy of tests/data's llama-tiny
// and corpus/sample.jsonl, and "micro", a 1-layer llama generated here so that a
// whole valid report is a few kB) and store snapshots: a calibrated micro job with
// a finished evaluation (every input starts from it), plus a pending calibration
// job, a pending evaluation or a pending export for modes 3, 4 and 5. Each input
// gets a fresh store restored from its snapshot and a fresh Coordinator.
//
// Properties: no crash, no sanitizer report, every refusal carries a message, and
// a registered worker's LeaseTask succeeds. Validation must refuse absurd values
// before allocating: a request that makes the coordinator allocate gigabytes is a
// finding (libFuzzer's -rss_limit_mb / -malloc_limit_mb report it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "common/safetensors.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"
#include "fuzz/fuzz_util.h"
#include "google/protobuf/stubs/logging.h"
#include "proto/qcal/v1/calibration.pb.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/export.pb.h"
#include "proto/qcal/v1/operations.pb.h"
#include "proto/qcal/v1/worker.pb.h"
#include "server/core/coordinator.h"
#include "server/store/in_memory_store.h"
#include "server/store/store.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = qcal::v1;
using qcal::server::Coordinator;
using qcal::server::Family;
using qcal::server::InMemoryStore;
using qcal::server::WriteBatch;

constexpr char kMicroConfig[] = R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
  "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
  "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": false,
  "bos_token_id": 1, "eos_token_id": 2})";
constexpr int kMaxReports = 8;

absl::Time g_now = absl::FromUnixSeconds(1'700'000'000);

void Must(const absl::Status& s, const std::string& what) {
  if (!s.ok()) qcal::fuzz::HarnessError(absl::StrCat(what, ": ", s.ToString()));
}

// A refusal always says why (issue 15: no empty-message status reaches a client).
// With QCAL_FUZZ_VERBOSE set, every answer is printed (to see what seeds reach).
void CheckRefusal(const absl::Status& s, const char* call) {
  static const bool verbose = std::getenv("QCAL_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "  %s: %s\n", call, s.ToString().c_str());
  QCAL_FUZZ_CHECK(s.ok() || !s.message().empty(),
                  absl::StrCat(call, " returned ", absl::StatusCodeToString(s.code()),
                               " with an empty message"));
}

struct World {
  std::string root;
  std::string output_root;
  std::string job_id;      // the calibrated micro job
  std::string export_dir;  // where the pending export of snapshot `exporting` writes
  WriteBatch base, calibrating, evaluating, exporting;
};

qcal::server::CoordinatorOptions Options(const World& w) {
  qcal::server::CoordinatorOptions o;
  o.data_roots = {w.root};
  o.output_root = w.output_root;
  o.lease_duration = absl::Seconds(60);
  o.max_active_jobs = 8;
  o.now = [] { return g_now; };
  return o;
}

WriteBatch Snapshot(qcal::server::Store& store) {
  WriteBatch b;
  for (int f = 0; f < qcal::server::kNumFamilies; ++f) {
    const Family family = static_cast<Family>(f);
    Must(store.Scan(family, "",
                    [&](const std::string& key, const std::string& value) {
                      b.Put(family, key, value);
                      return true;
                    }),
         "snapshot scan");
  }
  return b;
}

struct Instance {
  std::unique_ptr<InMemoryStore> store;
  std::unique_ptr<Coordinator> core;
};

Instance Start(const World& w, const WriteBatch& snapshot) {
  Instance i;
  i.store = std::make_unique<InMemoryStore>();
  Must(i.store->Write(snapshot), "restore snapshot");
  auto core = Coordinator::Create(i.store.get(), Options(w), nullptr);
  Must(core.status(), "Coordinator::Create");
  i.core = std::move(core).value();
  return i;
}

std::string Register(Coordinator& core) {
  v1::RegisterWorkerRequest r;
  r.set_name("fuzz");
  auto w = core.RegisterWorker(r);
  Must(w.status(), "RegisterWorker");
  return w->worker_id();
}

// Valid statistics of every linear of `config` (4 rows of heavy-tailed values).
std::vector<v1::LinearStatsProto> ValidStats(const qcal::ModelConfig& config, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(2.0f);
  std::vector<v1::LinearStatsProto> out;
  for (const qcal::LinearModule& l : qcal::LinearModules(config)) {
    qcal::stats::TensorStats in(l.in_features), o(l.out_features);
    std::vector<float> a(4 * l.in_features), b(4 * l.out_features);
    for (float& x : a) x = heavy(rng);
    for (float& x : b) x = heavy(rng);
    Must(in.AddRows(a.data(), 4), "AddRows");
    Must(o.AddRows(b.data(), 4), "AddRows");
    v1::LinearStatsProto p;
    p.set_name(l.name);
    qcal::stats::ToProto(in, p.mutable_input());
    qcal::stats::ToProto(o, p.mutable_output());
    out.push_back(std::move(p));
  }
  return out;
}

// Leases and completes every task with valid reports until none is left.
void RunToEnd(Coordinator& core, const qcal::ModelConfig& config) {
  const std::string worker = Register(core);
  for (int round = 0; round < 64; ++round) {
    v1::LeaseTaskRequest lr;
    lr.set_worker_id(worker);
    auto lease = core.LeaseTask(lr);
    Must(lease.status(), "LeaseTask");
    if (lease->task().task_id().empty()) return;
    const v1::Task& t = lease->task();
    v1::CompleteTaskHeader h;
    h.set_worker_id(worker);
    h.set_task_id(t.task_id());
    h.set_lease_id(t.lease_id());
    h.set_samples(t.sample_end() - t.sample_begin());
    h.set_tokens(h.samples() * 16);
    h.set_compute_seconds(0.5);
    std::vector<v1::LinearStatsProto> linears;
    google::protobuf::Any result;
    if (t.kind() == v1::TASK_CALIBRATE) {
      linears = ValidStats(config, static_cast<uint32_t>(t.shard_begin() + 1));
    } else if (t.kind() == v1::TASK_EVALUATE) {
      v1::EvaluateResult er;
      for (int64_t s = t.shard_begin(); s < t.shard_end(); ++s) {
        v1::EvaluatePartial* p = er.add_shards();
        p->set_hits(2 + s % 2);
        p->set_total(4);
        p->set_nll_sum(3.0 + s);
        p->set_predictions(4);
      }
      result.PackFrom(er);
    } else {
      qcal::fuzz::HarnessError("setup leased an unexpected task kind");
    }
    g_now += absl::Seconds(1);
    Must(core.CompleteTask(h, linears, t.kind() == v1::TASK_CALIBRATE ? nullptr : &result).status(),
         "CompleteTask (setup)");
  }
  qcal::fuzz::HarnessError("setup did not finish");
}

void MakeMicroModel(const std::string& dir, const qcal::ModelConfig& config) {
  qcal::fuzz::MakeDirs(dir);
  qcal::fuzz::WriteFile(dir + "/config.json", kMicroConfig);
  std::vector<qcal::TensorToWrite> tensors;
  for (const qcal::ExpectedTensor& e : qcal::ExpectedTensors(config)) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    std::vector<float> values(static_cast<size_t>(n), 0.01f);
    tensors.push_back(qcal::Float32Tensor(e.name, e.shape, values.data()));
  }
  Must(qcal::WriteSafetensors(dir + "/model.safetensors", tensors), "micro model");
}

void CopyWritable(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec) qcal::fuzz::HarnessError(absl::StrCat("copy ", from.string(), ": ", ec.message()));
  // Bazel's runfiles are read-only; the copies need not be.
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add, ec);
  if (!fs::is_directory(to)) return;
  for (const auto& e : fs::recursive_directory_iterator(to)) {
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add, ec);
  }
}

const World& TheWorld() {
  static const World* world = [] {
    // Parsing invalid UTF-8 logs an error per input; the parse result says enough.
    google::protobuf::SetLogHandler(nullptr);
    auto* w = new World;
    const std::string data = QCAL_TEST_DATA_DIR;
    w->root = qcal::fuzz::ScratchDir() + "/root";
    w->output_root = qcal::fuzz::ScratchDir() + "/out";
    qcal::fuzz::MakeDirs(w->root + "/models");
    qcal::fuzz::MakeDirs(w->root + "/corpus");
    qcal::fuzz::MakeDirs(w->output_root);
    CopyWritable(data + "/models/llama-tiny", w->root + "/models/llama-tiny");
    CopyWritable(data + "/corpus/sample.jsonl", w->root + "/corpus/sample.jsonl");
    auto config = qcal::ParseModelConfig(kMicroConfig, "micro config");
    Must(config.status(), "micro config");
    MakeMicroModel(w->root + "/models/micro", *config);
    w->export_dir = w->output_root + "/exp";

    // The base: a calibrated micro job (request_id "r1") with a finished evaluation.
    {
      InMemoryStore store;
      auto core = Coordinator::Create(&store, Options(*w), nullptr);
      Must(core.status(), "Coordinator::Create (setup)");
      v1::SubmitJobRequest r;
      r.set_request_id("r1");
      r.mutable_spec()->set_model("models/micro");
      r.mutable_spec()->set_corpus("corpus/sample.jsonl");
      r.mutable_spec()->mutable_sampling()->set_num_samples(8);
      r.mutable_spec()->mutable_sampling()->set_seq_len(16);
      r.mutable_spec()->set_shard_size(4);
      auto job = (*core)->SubmitJob(r);
      Must(job.status(), "SubmitJob (setup)");
      w->job_id = job->id();
      RunToEnd(**core, *config);
      v1::EvaluateRequest e;
      e.set_job_id(w->job_id);
      e.add_thresholds(1);
      e.add_thresholds(4);
      e.set_eval_corpus("corpus/sample.jsonl");
      e.mutable_eval_sampling()->set_num_samples(4);
      e.set_shard_size(4);
      Must((*core)->Evaluate(e).status(), "Evaluate (setup)");
      RunToEnd(**core, *config);
      w->base = Snapshot(store);
    }
    // One pending piece of work on top of the base, for each kind of report.
    auto with = [&](auto add) {
      Instance i = Start(*w, w->base);
      add(*i.core);
      return Snapshot(*i.store);
    };
    w->calibrating = with([&](Coordinator& core) {
      v1::SubmitJobRequest r;
      r.mutable_spec()->set_model("models/micro");
      r.mutable_spec()->set_corpus("corpus/sample.jsonl");
      r.mutable_spec()->mutable_sampling()->set_num_samples(12);
      r.mutable_spec()->mutable_sampling()->set_seq_len(16);
      r.mutable_spec()->set_shard_size(4);
      Must(core.SubmitJob(r).status(), "SubmitJob (setup 2)");
    });
    w->evaluating = with([&](Coordinator& core) {
      v1::EvaluateRequest e;
      e.set_job_id(w->job_id);
      e.add_thresholds(1);
      e.add_thresholds(8);
      e.set_eval_corpus("corpus/sample.jsonl");
      e.mutable_eval_sampling()->set_num_samples(8);
      e.set_shard_size(4);
      Must(core.Evaluate(e).status(), "Evaluate (setup 2)");
    });
    w->exporting = with([&](Coordinator& core) {
      v1::ExportRequest x;
      x.set_job_id(w->job_id);
      x.set_threshold(4);
      x.set_format("mllm");
      x.set_output("exp");
      Must(core.Export(x).status(), "Export (setup)");
    });
    return w;
  }();
  return *world;
}

void Placeholder(std::string* field, const std::string& value) {
  if (*field == "@") *field = value;
}

// After the calls: what a client would read must read.
void ReadBack(Coordinator& core) {
  v1::ListJobsRequest lr;
  auto jobs = core.ListJobs(lr);
  CheckRefusal(jobs.status(), "ListJobs");
  if (jobs.ok()) {
    for (const v1::Job& j : jobs->jobs()) {
      CheckRefusal(core.GetJob(j.id()).status(), "GetJob");
      int64_t chunks = 0;
      absl::Status st = core.StreamStats(j.id(), /*allow_partial=*/true, 1 << 16,
                                         [&](const v1::JobStatsChunk&) { return ++chunks < 64; });
      CheckRefusal(st, "StreamStats");
    }
  }
  v1::ListOperationsRequest olr;
  auto ops = core.ListOperations(olr);
  CheckRefusal(ops.status(), "ListOperations");
  if (ops.ok()) {
    for (const v1::Operation& op : ops->operations()) {
      CheckRefusal(core.GetOperation(op.name()).status(), "GetOperation");
    }
  }
}

void LeaseOnce(Coordinator& core) {
  v1::LeaseTaskRequest lr;
  lr.set_worker_id(Register(core));
  auto lease = core.LeaseTask(lr);
  QCAL_FUZZ_CHECK(lease.ok(), lease.status().ToString());
}

void Report(const World& w, Coordinator& core, int mode, const v1::CompleteTaskChunk& chunk) {
  const std::string worker = Register(core);
  const std::vector<v1::LinearStatsProto> linears(chunk.linears().begin(), chunk.linears().end());
  for (int i = 0; i < kMaxReports; ++i) {
    v1::LeaseTaskRequest lr;
    lr.set_worker_id(worker);
    auto lease = core.LeaseTask(lr);
    QCAL_FUZZ_CHECK(lease.ok(), lease.status().ToString());
    const v1::Task& t = lease->task();
    if (t.task_id().empty()) break;
    v1::CompleteTaskHeader h = chunk.header();
    Placeholder(h.mutable_worker_id(), worker);
    Placeholder(h.mutable_task_id(), t.task_id());
    Placeholder(h.mutable_lease_id(), t.lease_id());
    if (h.samples() == 0) h.set_samples(t.sample_end() - t.sample_begin());
    google::protobuf::Any result = chunk.result();
    v1::ExportResponse response;
    if (mode == 5 && result.UnpackTo(&response) && response.output_dir() == "@") {
      response.set_output_dir(w.export_dir);
      result.PackFrom(response);
    }
    auto done = core.CompleteTask(h, linears, chunk.has_result() ? &result : nullptr);
    CheckRefusal(done.status(), "CompleteTask");
    g_now += absl::Seconds(1);
    if (!done.ok()) break;
  }
  ReadBack(core);
  g_now += absl::Seconds(61);
  CheckRefusal(core.ExpireLeases(), "ExpireLeases");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const World& w = TheWorld();
  if (size < 1) return 0;
  const int mode = data[0] % 6;
  const uint8_t* msg = data + 1;
  const int n = static_cast<int>(size - 1);
  g_now = absl::FromUnixSeconds(1'700'000'000);
  switch (mode) {
    case 0: {
      v1::SubmitJobRequest r;
      if (!r.ParseFromArray(msg, n)) return 0;
      Instance i = Start(w, w.base);
      auto job = i.core->SubmitJob(r);
      CheckRefusal(job.status(), "SubmitJob");
      if (job.ok()) {
        LeaseOnce(*i.core);
        ReadBack(*i.core);
      }
      return 0;
    }
    case 1: {
      v1::EvaluateRequest r;
      if (!r.ParseFromArray(msg, n)) return 0;
      Placeholder(r.mutable_job_id(), w.job_id);
      Instance i = Start(w, w.base);
      auto op = i.core->Evaluate(r);
      CheckRefusal(op.status(), "Evaluate");
      if (op.ok()) {
        LeaseOnce(*i.core);
        ReadBack(*i.core);
      }
      return 0;
    }
    case 2: {
      v1::ExportRequest r;
      if (!r.ParseFromArray(msg, n)) return 0;
      Placeholder(r.mutable_job_id(), w.job_id);
      Instance i = Start(w, w.base);
      auto op = i.core->Export(r);
      CheckRefusal(op.status(), "Export");
      if (op.ok()) {
        LeaseOnce(*i.core);
        ReadBack(*i.core);
      }
      return 0;
    }
    default: {
      v1::CompleteTaskChunk chunk;
      if (!chunk.ParseFromArray(msg, n)) return 0;
      const WriteBatch& snapshot =
          mode == 3 ? w.calibrating : mode == 4 ? w.evaluating : w.exporting;
      Instance i = Start(w, snapshot);
      Report(w, *i.core, mode, chunk);
      return 0;
    }
  }
}
