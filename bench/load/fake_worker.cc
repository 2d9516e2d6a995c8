#include "bench/load/fake_worker.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bench/load/common.h"
#include "common/model_config.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"

namespace qcal::bench {
namespace {

// Report chunks, as qcal-worker cuts them (worker/service/worker_loop.cc).
constexpr size_t kChunkBytes = 2u << 20;
constexpr char kCompleteTaskMethod[] = "/qcal.v1.WorkerService/CompleteTask";

// Statistics of rows shaped like LLM activations: per-channel scales spread
// log-normally, a few massive outlier channels, Gaussian values.
absl::StatusOr<stats::TensorStats> SyntheticStats(int64_t channels, int rows,
                                                  std::mt19937_64& rng) {
  std::lognormal_distribution<float> scale(0.0f, 0.7f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> s(static_cast<size_t>(channels));
  for (float& x : s) x = scale(rng) * (u(rng) < 0.002f ? 50.0f : 1.0f);
  std::vector<float> data(static_cast<size_t>(channels) * static_cast<size_t>(rows));
  for (size_t i = 0; i < data.size(); ++i) data[i] = s[i % s.size()] * normal(rng);
  stats::TensorStats t(channels);
  absl::Status st = t.AddRows(data.data(), rows);
  if (!st.ok()) return st;
  return t;
}

// The message bytes of a finished call's response buffer.
std::string Flatten(grpc::ByteBuffer& out) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (out.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

}  // namespace

absl::StatusOr<PreparedReport> BuildReport(const std::string& model_dir, int rows, uint64_t seed) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  if (!config.ok()) return config.status();
  std::mt19937_64 rng(seed);
  PreparedReport r;
  r.rows = rows;
  int64_t buckets = 0, tensors = 0;
  v1::CompleteTaskChunk chunk;
  auto flush = [&] {
    const std::string bytes = chunk.SerializeAsString();
    r.bytes += static_cast<int64_t>(bytes.size());
    r.chunks.emplace_back(bytes);
    chunk.Clear();
  };
  for (const LinearModule& l : LinearModules(*config)) {
    v1::LinearStatsProto* p = chunk.add_linears();
    p->set_name(l.name);
    for (const auto& [channels, out] : {std::make_pair(l.in_features, p->mutable_input()),
                                        std::make_pair(l.out_features, p->mutable_output())}) {
      absl::StatusOr<stats::TensorStats> t = SyntheticStats(channels, rows, rng);
      if (!t.ok()) return t.status();
      stats::ToProto(*t, out);
      const int64_t b = static_cast<int64_t>(t->sketch().keys().size());
      buckets += b;
      r.max_buckets = std::max(r.max_buckets, b);
      ++tensors;
      r.channels += channels;
    }
    ++r.linears;
    if (chunk.ByteSizeLong() > kChunkBytes) flush();
  }
  if (chunk.linears_size() > 0) flush();
  r.mean_buckets = tensors ? static_cast<double>(buckets) / static_cast<double>(tensors) : 0;
  return r;
}

grpc::Status SendReport(grpc::GenericStub& stub, const v1::CompleteTaskHeader& header,
                        const PreparedReport& report, double timeout_s,
                        v1::CompleteTaskResponse* response, int64_t* bytes_sent) {
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(timeout_s));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, kCompleteTaskMethod, &cq);
  // One operation at a time; each waits for its own completion.
  auto wait = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  void* const tag = reinterpret_cast<void*>(1);
  call->StartCall(tag);
  bool ok = wait();
  v1::CompleteTaskChunk head;
  *head.mutable_header() = header;
  std::vector<grpc::Slice> first = {grpc::Slice(head.SerializeAsString())};
  if (!report.chunks.empty()) first.push_back(report.chunks[0]);
  *bytes_sent = static_cast<int64_t>(first[0].size()) + report.bytes;
  for (size_t i = 0; ok && i < std::max<size_t>(1, report.chunks.size()); ++i) {
    grpc::ByteBuffer buf = i == 0 ? grpc::ByteBuffer(first.data(), first.size())
                                  : grpc::ByteBuffer(&report.chunks[i], 1);
    call->Write(buf, tag);
    ok = wait();
  }
  if (ok) {
    call->WritesDone(tag);
    ok = wait();
  }
  grpc::ByteBuffer out;
  if (ok) {
    call->Read(&out, tag);
    ok = wait();
  }
  grpc::Status status;
  call->Finish(&status, tag);
  wait();
  cq.Shutdown();
  void* t = nullptr;
  bool o = false;
  while (cq.Next(&t, &o)) {
  }
  if (status.ok() && !response->ParseFromString(Flatten(out))) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "unparsable CompleteTaskResponse");
  }
  return status;
}

absl::StatusOr<FakeWorker> RegisterFakeWorker(const std::string& address, const std::string& name) {
  FakeWorker w;
  std::shared_ptr<grpc::Channel> channel = NewChannel(address);
  w.stub = v1::WorkerService::NewStub(channel);
  w.generic = std::make_unique<grpc::GenericStub>(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(30));
  v1::RegisterWorkerRequest r;
  r.set_name(name);
  r.set_device("fake");
  v1::RegisterWorkerResponse resp;
  grpc::Status s = w.stub->RegisterWorker(&ctx, r, &resp);
  if (!s.ok()) return absl::InternalError(absl::StrCat("RegisterWorker: ", s.error_message()));
  w.id = resp.worker_id();
  return w;
}

v1::CompleteTaskHeader HeaderFor(const FakeWorker& w, const v1::Task& t, int64_t rows) {
  v1::CompleteTaskHeader h;
  h.set_worker_id(w.id);
  h.set_task_id(t.task_id());
  h.set_lease_id(t.lease_id());
  h.set_samples(t.sample_end() - t.sample_begin());
  h.set_tokens(rows);
  // As a worker reporting at the default interval would: keeps tasks at one shard.
  h.set_compute_seconds(kDefaultReportIntervalSeconds);
  return h;
}

}  // namespace qcal::bench
