// TensorStats::AddRows throughput: ns per element for the hot path (every linear input
// and output of every forward pass). Target: <= 1.5 ns/element on one core.
//   tensor_stats_bench --benchmark_filter=AddRows
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/stats/internal/add_rows_kernels.h"
#include "common/stats/tensor_stats.h"

namespace qcal::stats {
namespace {

// LLM-like activations: N(0, 1) with a few large outlier channels.
std::vector<float> MakeActivations(int64_t rows, int64_t channels) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(channels), 1.0f);
  for (int i = 0; i < 8; ++i) scale[rng() % channels] = 300.0f;
  std::vector<float> out(static_cast<size_t>(rows * channels));
  for (size_t i = 0; i < out.size(); ++i) out[i] = normal(rng) * scale[i % channels];
  return out;
}

void SetRate(benchmark::State& state, int64_t elements) {
  state.SetItemsProcessed(state.iterations() * elements);
  state.counters["ns_per_element"] = benchmark::Counter(
      static_cast<double>(elements),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_AddRows(benchmark::State& state) {
  const int64_t rows = state.range(0), channels = state.range(1);
  const std::vector<float> data = MakeActivations(rows, channels);
  TensorStats stats(channels);
  for (auto _ : state) {
    if (!stats.AddRows(data.data(), rows).ok()) state.SkipWithError("AddRows failed");
  }
  benchmark::DoNotOptimize(stats.sum().data());
  SetRate(state, rows * channels);
}
BENCHMARK(BM_AddRows)->Args({512, 4096})->Args({512, 11008})->Args({1, 4096});

// The three passes alone, to see where the time goes.
void BM_MagnitudeRange(benchmark::State& state) {
  const std::vector<float> data = MakeActivations(512, 4096);
  for (auto _ : state) {
    for (size_t i = 0; i < data.size(); i += 1 << 15) {
      benchmark::DoNotOptimize(internal::MagnitudeRange(data.data() + i, 1 << 15));
    }
  }
  SetRate(state, static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_MagnitudeRange);

void BM_CountKeys(benchmark::State& state) {
  const std::vector<float> data = MakeActivations(512, 4096);
  std::vector<uint32_t> table(kNumKeys);
  for (auto _ : state) {
    internal::CountKeys(data.data(), static_cast<int64_t>(data.size()), table.data());
    benchmark::ClobberMemory();
  }
  SetRate(state, static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_CountKeys);

void BM_AccumulateRows(benchmark::State& state) {
  const int64_t rows = 512, channels = 4096;
  const std::vector<float> data = MakeActivations(rows, channels);
  std::vector<float> mn(channels, 1e30f), mx(channels, -1e30f);
  std::vector<double> s(channels), ss(channels);
  for (auto _ : state) {
    for (int64_t r = 0; r < rows; r += 8) {
      internal::AccumulateRows(data.data() + r * channels, 8, channels, mn.data(),
                               mx.data(), s.data(), ss.data());
    }
    benchmark::ClobberMemory();
  }
  SetRate(state, rows * channels);
}
BENCHMARK(BM_AccumulateRows);

}  // namespace
}  // namespace qcal::stats

BENCHMARK_MAIN();
