// The loaded model and the corpus sampler a worker keeps between tasks of the same
// job (loading a model and indexing a corpus cost far more than most tasks). Shared
// by the runners that run the model (calibrate, evaluate). Not thread-safe: the
// loop runs one task at a time.
#ifndef QCAL_WORKER_SERVICE_MODEL_CACHE_H_
#define QCAL_WORKER_SERVICE_MODEL_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/qcal/v1/worker.pb.h"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace qcal {

class ModelCache {
 public:
  explicit ModelCache(EngineOptions options) : options_(std::move(options)) {}

  // The engine for the task's model and batch size, reloaded only when they change.
  absl::StatusOr<CalibrationEngine*> Engine(const v1::Task& task);
  // The token ids of the task's samples [sample_begin, sample_end).
  absl::StatusOr<std::vector<std::vector<int32_t>>> Samples(const v1::Task& task);
  const std::string& loaded_model() const { return model_; }

 private:
  const EngineOptions options_;
  std::unique_ptr<CalibrationEngine> engine_;
  std::string model_;
  int batch_ = 0;
  std::unique_ptr<text::CorpusSampler> sampler_;
  std::string sampler_key_;
};

}  // namespace qcal

#endif  // QCAL_WORKER_SERVICE_MODEL_CACHE_H_
