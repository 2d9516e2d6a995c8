// CalibrationEngine: token sequences in, activation statistics of every linear module
// out, in one process. This header is libtorch-free so commands and the worker loop
// can use it without paying libtorch's compile cost.
//
// Each sample is one forward sequence (positions 0..len-1). Samples are run in
// batches of `batch_size`, right-padded with an attention mask; padding never enters
// the statistics. Rows are accumulated in sample order and (by default) each sample's
// values do not depend on its batch, so min, max, counts, sketch buckets and even the
// sums are bitwise identical for any batch size.
//
// Thread-safety: one Accumulate at a time per engine.
#ifndef QCAL_WORKER_ENGINE_ENGINE_H_
#define QCAL_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/stats/stats_set.h"

namespace qcal {

class StatsCollector;

struct EngineOptions {
  std::string device = "cpu";  // "cpu" or "cuda:N"
  bool bf16 = false;           // linear layers in bfloat16 (see ComputeOptions)
  int threads = 0;             // compute threads (BLAS pool); 0 = one per core
  int batch_size = 8;          // sequences per forward pass; >= 1
  // Compute statistics with tensor operations even on CPU (the path a GPU uses).
  bool tensor_op_stats = false;
  // See ComputeOptions::batch_invariant: true makes every figure bitwise independent
  // of batch size and sharding; false runs one padded pass per batch (faster on
  // GPUs; figures then move at float-rounding level with the batch composition).
  bool batch_invariant = true;
};

// Progress callback: samples done so far; returning false cancels (the call then
// returns CANCELLED and the statistics gathered so far are discarded).
using ProgressFn = std::function<bool(int64_t samples_done)>;

class CalibrationEngine {
 public:
  // Loads the model folder. Errors as CausalLM::Load, plus INVALID_ARGUMENT for options.
  static absl::StatusOr<std::unique_ptr<CalibrationEngine>> Load(const std::string& model_dir,
                                                                 const EngineOptions& options);
  ~CalibrationEngine();

  const ModelConfig& config() const;
  const std::vector<LinearModule>& linears() const;

  // Runs every sample and merges its statistics into *stats (linears created in
  // forward order on first use). Empty samples and out-of-vocabulary ids are
  // INVALID_ARGUMENT naming the sample index; *stats is untouched on any error.
  absl::Status Accumulate(const std::vector<std::vector<int32_t>>& samples,
                          stats::StatsSet* stats, const ProgressFn& progress = {});

  // The same forward passes without statistics (the baseline benchmarks compare with).
  absl::Status ForwardOnly(const std::vector<std::vector<int32_t>>& samples);

 private:
  CalibrationEngine();
  // Validates samples, then runs them in batches; `observer` may be null.
  absl::Status Run(const std::vector<std::vector<int32_t>>& samples, StatsCollector* collector,
                   int64_t* tokens, const ProgressFn& progress);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sets the compute threads (0 = hardware concurrency): the BLAS pool when it is
// OpenBLAS (libtorch's own intra-op pool then stays at 1), else libtorch's pool.
void SetComputeThreads(int threads);

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_ENGINE_H_
