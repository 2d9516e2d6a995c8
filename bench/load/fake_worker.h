// Fake workers for the load test: no model, just a worker identity, synthetic
// statistics reports built and serialized once, the CompleteTask header a leased task
// needs, and a CompleteTask that sends those bytes as qcal-worker would. Serializing
// once keeps this side's CPU out of the figures: the coordinator's merge is measured.
//
// Threading: a PreparedReport is read-only once built and may be sent by any number
// of threads at once; a FakeWorker's stubs are thread-safe, but each fake worker is
// meant to be driven by one thread, as a real worker is. Errors: Status/grpc::Status
// return values, never exceptions.
#ifndef QCAL_BENCH_LOAD_FAKE_WORKER_H_
#define QCAL_BENCH_LOAD_FAKE_WORKER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "proto/qcal/v1/worker.grpc.pb.h"

namespace qcal::bench {

// One report's linears, serialized once as CompleteTaskChunk messages without header
// (cut at 2 MiB like qcal-worker); each task's report is its header followed by
// these, so the coordinator sees exactly the bytes a worker sends.
struct PreparedReport {
  std::vector<grpc::Slice> chunks;
  int64_t bytes = 0;  // of all chunks
  int64_t linears = 0;
  int64_t channels = 0;  // input + output channels over all linears
  int64_t rows = 0;
  double mean_buckets = 0;  // sketch buckets per tensor
  int64_t max_buckets = 0;
};

// A report for every linear of the model in `model_dir` (its config.json only),
// `rows` rows each of synthetic LLM-like activations; the same `seed` gives the same
// bytes.
absl::StatusOr<PreparedReport> BuildReport(const std::string& model_dir, int rows, uint64_t seed);

// A fake worker's identity and stubs (one connection of its own).
struct FakeWorker {
  std::unique_ptr<v1::WorkerService::Stub> stub;
  std::unique_ptr<grpc::GenericStub> generic;
  std::string id;
};

// RegisterWorker (device "fake", 30 s deadline) as `name`.
absl::StatusOr<FakeWorker> RegisterFakeWorker(const std::string& address, const std::string& name);

// The CompleteTask header for leased task `t` with `rows` tokens, claiming the default
// report interval as compute time (which keeps the coordinator's tasks at one shard).
v1::CompleteTaskHeader HeaderFor(const FakeWorker& w, const v1::Task& t, int64_t rows);

// CompleteTask with the header and the prepared chunks, over a generic stub (no
// per-report serialization on this side). Blocks until the call ends (at most
// timeout_s); *bytes_sent is the message bytes written, *response is set on OK.
grpc::Status SendReport(grpc::GenericStub& stub, const v1::CompleteTaskHeader& header,
                        const PreparedReport& report, double timeout_s,
                        v1::CompleteTaskResponse* response, int64_t* bytes_sent);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_LOAD_FAKE_WORKER_H_
