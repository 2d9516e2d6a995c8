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
// Evaluate runs the same batches through the float model or a simulated W8A8 variant
// (worker/engine/w8a8.h) and scores them (common/quant/metrics.h).
//
// Thread-safety: one Accumulate / ForwardOnly / Evaluate at a time per engine.
#ifndef QCAL_WORKER_ENGINE_ENGINE_H_
#define QCAL_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/quant/clip.h"
#include "common/quant/metrics.h"
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

// What Evaluate runs.
struct EvalVariant {
  // false: the float model. true: simulated W8A8 (mllm's W8A8LinearStatic) of every
  // linear but lm_head, with `linears`' decisions and scales.
  bool w8a8 = false;
  // By name, any order (quant::DecideClips' linears): every quantized linear of the
  // model must be listed; lm_head's entry is ignored. Unused for the float model.
  std::vector<quant::LinearClip> linears;

  static EvalVariant Float() { return {}; }
  static EvalVariant W8A8(std::vector<quant::LinearClip> linears) {
    return {true, std::move(linears)};
  }
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

  // Runs every sample through `variant` and adds its metrics to *metrics: mllm's
  // last-token accuracy and the next-token NLL over every position (samples of one
  // token score nothing), see common/quant/metrics.h. Batched as Accumulate, and with
  // batch_invariant every figure is bitwise independent of the batch size, so
  // partials over disjoint samples merge into the figures of one run. The W8A8
  // variant's fake-quantized weights are computed at the first W8A8 call and reused
  // by every later one. Errors: INVALID_ARGUMENT for samples (as Accumulate) or a
  // variant that does not fit the model (naming the linear); CANCELLED through
  // `progress`; *metrics is untouched on any error.
  absl::Status Evaluate(const std::vector<std::vector<int32_t>>& samples,
                        const EvalVariant& variant, quant::EvalMetrics* metrics,
                        const ProgressFn& progress = {});

 private:
  CalibrationEngine();
  struct RunHooks;  // what a run feeds its batches to (engine.cc)
  // Validates samples, then runs them in batches through the hooks.
  absl::Status Run(const std::vector<std::vector<int32_t>>& samples, const RunHooks& hooks,
                   int64_t* tokens, const ProgressFn& progress);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sets the compute threads (0 = hardware concurrency): the BLAS pool when it is
// OpenBLAS (libtorch's own intra-op pool then stays at 1), else libtorch's pool.
void SetComputeThreads(int threads);

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_ENGINE_H_
