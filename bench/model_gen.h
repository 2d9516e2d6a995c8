// Random Hugging Face model folders (config.json + model.safetensors) of any size and
// any architecture in the table, for benchmarks. Weights are N(0, init_std^2) from a
// seeded generator (norm weights 1), written as HF's save_pretrained names them.
#ifndef QCAL_BENCH_MODEL_GEN_H_
#define QCAL_BENCH_MODEL_GEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qcal::bench {

struct RandomModelSpec {
  std::string model_type = "llama";  // any model_type of the architecture table
  int64_t vocab_size = 32000;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 1536;
  int64_t num_layers = 4;
  int64_t num_heads = 8;
  int64_t num_kv_heads = 4;
  int64_t max_position_embeddings = 4096;
  int64_t sliding_window = 0;  // mistral only; 0 = none
  bool tie_word_embeddings = false;
  std::string dtype = "F32";  // F32, F16 or BF16
  double init_std = 0.02;
  uint64_t seed = 0;
};

// Presets by approximate parameter count: "tiny" (~0.6 M), "25m", "100m".
absl::StatusOr<RandomModelSpec> PresetSpec(const std::string& preset, const std::string& model_type);

// Number of parameters the spec describes.
int64_t ParameterCount(const RandomModelSpec& spec);

// Writes the folder (created if needed).
absl::Status WriteRandomModel(const std::string& dir, const RandomModelSpec& spec);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_MODEL_GEN_H_
