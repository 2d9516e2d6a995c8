// Merge throughput of LinearStatsProto operands in RocksDbStore: what one worker
// report costs the coordinator per linear.
//
//   BM_RocksDbMergeThenGet  kOperands Writes of one Merge operand each into a fresh
//                           key, then one Get (the full merge of all of them): the
//                           end-to-end path. bytes = operand bytes written.
//   BM_RocksDbWriteOperand  the Write alone (operand validation, shape check, WAL).
//   BM_MergeLinearStats     the merge function alone (no RocksDB): kOperands
//                           operands into one value.
// Args: input channels, output channels. (4096, 4096) is a 7B attention/MLP-input
// linear; (11008, 4096) is Llama-2-7B's down_proj.
//
// Run: build-*/server/store/store_bench [--benchmark_filter=...]
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"
#include "proto/qcal/v1/stats.pb.h"
#include "server/store/rocksdb_store.h"
#include "server/store/stats_merge.h"

namespace qcal::server {
namespace {

constexpr int kOperands = 16;
constexpr int64_t kRows =
    256;  // tokens per partial; the value size does not depend on it

// LLM-like activations: N(0, 1) with a few outlier channels 100x larger.
std::vector<float> Activations(int64_t rows, int64_t channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(channels), 1.0f);
  for (int64_t i = 0; i < channels / 500 + 1; ++i) scale[rng() % channels] = 100.0f;
  std::vector<float> data(static_cast<size_t>(rows * channels));
  for (size_t i = 0; i < data.size(); ++i) data[i] = scale[i % channels] * normal(rng);
  return data;
}

// kOperands distinct serialized partials of one linear.
std::vector<std::string> MakeOperands(int64_t in, int64_t out) {
  std::vector<std::string> operands;
  for (int i = 0; i < kOperands; ++i) {
    stats::TensorStats input(in);
    stats::TensorStats output(out);
    const auto x = Activations(kRows, in, 1 + i);
    const auto y = Activations(kRows, out, 99 + i);
    if (!input.AddRows(x.data(), kRows).ok() || !output.AddRows(y.data(), kRows).ok()) {
      std::abort();
    }
    v1::LinearStatsProto proto;
    proto.set_name("model.layers.0.mlp.down_proj");
    stats::ToProto(input, proto.mutable_input());
    stats::ToProto(output, proto.mutable_output());
    operands.push_back(proto.SerializeAsString());
  }
  return operands;
}

// A fresh temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string templ =
        (std::filesystem::temp_directory_path() / "qcal_store_bench.XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) std::abort();
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

int64_t TotalBytes(const std::vector<std::string>& operands) {
  int64_t n = 0;
  for (const auto& s : operands) n += static_cast<int64_t>(s.size());
  return n;
}

std::unique_ptr<RocksDbStore> OpenStore(const TempDir& dir, benchmark::State& state) {
  auto opened = RocksDbStore::Open(dir.Sub("db"), RocksDbOptions());
  if (!opened.ok()) {
    state.SkipWithError(std::string(opened.status().message()).c_str());
    return nullptr;
  }
  return *std::move(opened);
}

void BM_RocksDbMergeThenGet(benchmark::State& state) {
  const auto operands = MakeOperands(state.range(0), state.range(1));
  TempDir dir;
  auto store = OpenStore(dir, state);
  if (store == nullptr) return;
  int64_t key_index = 0;
  size_t merged_size = 0;
  for (auto _ : state) {
    const std::string key = "job-1/" + std::to_string(key_index++);
    for (const std::string& operand : operands) {
      WriteBatch batch;
      batch.Merge(Family::kStats, key, operand);
      if (!store->Write(batch).ok()) state.SkipWithError("write failed");
    }
    auto merged = store->Get(Family::kStats, key);
    if (!merged.ok() || !merged->has_value()) state.SkipWithError("get failed");
    merged_size = (*merged)->size();
  }
  state.SetBytesProcessed(state.iterations() * TotalBytes(operands));
  state.SetItemsProcessed(state.iterations() * kOperands);
  state.counters["operand_KB"] = static_cast<double>(operands[0].size()) / 1024.0;
  state.counters["merged_KB"] = static_cast<double>(merged_size) / 1024.0;
}

void BM_RocksDbWriteOperand(benchmark::State& state) {
  const auto operands = MakeOperands(state.range(0), state.range(1));
  TempDir dir;
  auto store = OpenStore(dir, state);
  if (store == nullptr) return;
  int64_t i = 0;
  for (auto _ : state) {
    WriteBatch batch;
    // A new key every kOperands writes, so no key accumulates unbounded operands.
    batch.Merge(Family::kStats, "job-1/" + std::to_string(i / kOperands),
                operands[static_cast<size_t>(i % kOperands)]);
    ++i;
    if (!store->Write(batch).ok()) state.SkipWithError("write failed");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(operands[0].size()));
  state.SetItemsProcessed(state.iterations());
}

void BM_MergeLinearStats(benchmark::State& state) {
  const auto operands = MakeOperands(state.range(0), state.range(1));
  std::vector<absl::string_view> views(operands.begin(), operands.end());
  for (auto _ : state) {
    auto merged = MergeLinearStatsViews(nullptr, views);
    if (!merged.ok()) state.SkipWithError("merge failed");
    benchmark::DoNotOptimize(merged);
  }
  state.SetBytesProcessed(state.iterations() * TotalBytes(operands));
  state.SetItemsProcessed(state.iterations() * kOperands);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 4096})
      ->Args({11008, 4096})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

BENCHMARK(BM_RocksDbMergeThenGet)->Apply(Shapes);
BENCHMARK(BM_RocksDbWriteOperand)->Apply(Shapes);
BENCHMARK(BM_MergeLinearStats)->Apply(Shapes);

}  // namespace
}  // namespace qcal::server

BENCHMARK_MAIN();
