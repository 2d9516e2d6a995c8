#include "worker/engine/engine.h"

#include <dlfcn.h>

#include <algorithm>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/eval_scoring.h"
#include "worker/engine/stats_collector.h"
#include "worker/engine/w8a8.h"
#include "worker/model/causal_lm.h"

namespace qcal {

struct CalibrationEngine::Impl {
  EngineOptions options;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<W8A8Weights> w8a8_weights;  // made by the first W8A8 Evaluate
};

struct CalibrationEngine::RunHooks {
  StatsCollector* collector = nullptr;        // statistics, or null
  const LinearTransform* transform = nullptr;  // a model variant, or null (float)
  // Called per batch with the index of its first sample and the logits [B, T, V].
  std::function<absl::Status(size_t first, const at::Tensor& logits)> on_logits;
};

CalibrationEngine::CalibrationEngine() : impl_(std::make_unique<Impl>()) {}
CalibrationEngine::~CalibrationEngine() = default;

void SetComputeThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // GEMMs dominate and run in the BLAS library's own thread pool; libtorch's intra-op
  // pool stays at one thread on CPU because the two pools spin against each other
  // (measured on 2 vCPUs: torch 2 + OpenBLAS 2 threads ran 3-4x slower than torch 1 +
  // OpenBLAS 2). OpenBLAS is found at run time so any BLAS libtorch loads works.
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    fn(threads);
    at::set_num_threads(1);
  } else {
    at::set_num_threads(threads);
  }
}

absl::StatusOr<std::unique_ptr<CalibrationEngine>> CalibrationEngine::Load(
    const std::string& model_dir, const EngineOptions& options) {
  if (options.batch_size < 1 || options.batch_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch-size must be in [1, 4096], got ", options.batch_size));
  }
  if (options.threads < 0 || options.threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be in [0, 1024], got ", options.threads));
  }
  SetComputeThreads(options.threads);
  ComputeOptions compute;
  compute.device = options.device;
  compute.bf16 = options.bf16;
  compute.batch_invariant = options.batch_invariant;
  std::unique_ptr<CalibrationEngine> e(new CalibrationEngine());
  e->impl_->options = options;
  QCAL_ASSIGN_OR_RETURN(e->impl_->model, CausalLM::Load(model_dir, compute));
  return e;
}

const ModelConfig& CalibrationEngine::config() const { return impl_->model->config(); }
const std::vector<LinearModule>& CalibrationEngine::linears() const {
  return impl_->model->linears();
}

absl::Status CalibrationEngine::Run(const std::vector<std::vector<int32_t>>& samples,
                                    const RunHooks& hooks, int64_t* tokens,
                                    const ProgressFn& progress) {
  const CausalLM& model = *impl_->model;
  StatsCollector* collector = hooks.collector;
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sample ", i, " has no tokens"));
    }
    for (int32_t id : samples[i]) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("sample ", i, " has token id ", id,
                                                       " outside the vocabulary [0, ", vocab, ")"));
      }
    }
  }
  *tokens = 0;
  const size_t batch = static_cast<size_t>(impl_->options.batch_size);
  try {
    c10::InferenceMode guard;
    for (size_t start = 0; start < samples.size(); start += batch) {
      const size_t end = std::min(samples.size(), start + batch);
      size_t T = 0;
      for (size_t i = start; i < end; ++i) T = std::max(T, samples[i].size());
      const int64_t B = static_cast<int64_t>(end - start);
      at::Tensor ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
      at::Tensor mask = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
      auto ids_a = ids.accessor<int64_t, 2>();
      auto mask_a = mask.accessor<int64_t, 2>();
      std::vector<int64_t> valid;
      bool padded = false;
      for (int64_t b = 0; b < B; ++b) {
        const auto& s = samples[start + b];
        for (size_t t = 0; t < s.size(); ++t) {
          ids_a[b][t] = s[t];
          mask_a[b][t] = 1;
          valid.push_back(b * static_cast<int64_t>(T) + static_cast<int64_t>(t));
        }
        padded |= s.size() != T;
      }
      *tokens += static_cast<int64_t>(valid.size());
      if (collector != nullptr) {
        // Batch-invariant passes show the observer valid rows only.
        if (padded && !impl_->options.batch_invariant) {
          collector->SetValidRows(at::tensor(valid, at::kLong).to(model.device()));
        } else {
          collector->SetValidRows(at::Tensor());
        }
      }
      auto out = model.Forward(ids, padded ? mask : at::Tensor(), collector,
                               /*output_hidden_states=*/false, hooks.transform);
      if (!out.ok()) return out.status();
      if (hooks.on_logits) {
        absl::Status s = hooks.on_logits(start, out->logits);
        if (!s.ok()) return s;
      }
      if (progress && !progress(static_cast<int64_t>(end))) {
        return absl::CancelledError(absl::StrCat("cancelled after ", end, " samples"));
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("calibration batch failed: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status CalibrationEngine::ForwardOnly(const std::vector<std::vector<int32_t>>& samples) {
  int64_t tokens = 0;
  return Run(samples, RunHooks(), &tokens, {});
}

absl::Status CalibrationEngine::Evaluate(const std::vector<std::vector<int32_t>>& samples,
                                         const EvalVariant& variant,
                                         quant::EvalMetrics* metrics,
                                         const ProgressFn& progress) {
  const CausalLM& model = *impl_->model;
  std::unique_ptr<W8A8Simulation> simulation;
  if (variant.w8a8) {
    if (impl_->w8a8_weights == nullptr) {
      QCAL_ASSIGN_OR_RETURN(impl_->w8a8_weights, W8A8Weights::Create(model));
    }
    QCAL_ASSIGN_OR_RETURN(simulation,
                          W8A8Simulation::Create(model, impl_->w8a8_weights.get(), variant.linears));
  }
  quant::EvalMetrics local;
  RunHooks hooks;
  hooks.transform = simulation.get();
  hooks.on_logits = [&](size_t first, const at::Tensor& logits) -> absl::Status {
    for (int64_t b = 0; b < logits.size(0); ++b) {
      const std::vector<int32_t>& ids = samples[first + static_cast<size_t>(b)];
      const int64_t len = static_cast<int64_t>(ids.size());
      QCAL_RETURN_IF_ERROR(ScoreSample(logits[b].slice(0, 0, len), ids, &local));
    }
    return absl::OkStatus();
  };
  int64_t tokens = 0;
  QCAL_RETURN_IF_ERROR(Run(samples, hooks, &tokens, progress));
  metrics->Merge(local);
  return absl::OkStatus();
}

absl::Status CalibrationEngine::Accumulate(const std::vector<std::vector<int32_t>>& samples,
                                           stats::StatsSet* stats, const ProgressFn& progress) {
  const CausalLM& model = *impl_->model;
  const bool tensor_ops = impl_->options.tensor_op_stats || model.device().type() != at::kCPU;
  StatsCollector collector(model.linears(), tensor_ops);
  int64_t tokens = 0;
  RunHooks hooks;
  hooks.collector = &collector;
  QCAL_RETURN_IF_ERROR(Run(samples, hooks, &tokens, progress));
  stats::StatsSet local;
  for (size_t i = 0; i < collector.linears().size(); ++i) {
    QCAL_RETURN_IF_ERROR(local.Add(stats::LinearStats(collector.linears()[i].name,
                                                      std::move(collector.input(i)),
                                                      std::move(collector.output(i)))));
  }
  QCAL_RETURN_IF_ERROR(local.AddTokens(tokens));
  return stats->Merge(local);
}

}  // namespace qcal
