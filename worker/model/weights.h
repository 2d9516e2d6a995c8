// Loading a Hugging Face model folder's weights into float32 tensors.
//
// Reads model.safetensors, or model.safetensors.index.json and its shards, through the
// validating SafetensorsFile reader; F32, F16 and BF16 are widened to float32 exactly.
// Every tensor the architecture needs is looked up by its Hugging Face name and its
// shape checked against config.json; errors name the file and the tensor.
#ifndef QCAL_WORKER_MODEL_WEIGHTS_H_
#define QCAL_WORKER_MODEL_WEIGHTS_H_

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "common/model_config.h"

namespace qcal {

// Tensors of one layer, by role; undefined tensors are absent (e.g. no bias).
struct LayerWeights {
  at::Tensor attn_norm, mlp_norm;
  at::Tensor q, k, v, o, q_bias, k_bias, v_bias;
  at::Tensor gate, up, down;
};

struct ModelWeights {
  at::Tensor embed;    // [V, H]
  at::Tensor final_norm;
  at::Tensor lm_head;  // [V, H]; the embedding itself when tied
  std::vector<LayerWeights> layers;
};

// Loads every weight `config` needs from `dir` as contiguous float32 CPU tensors.
absl::StatusOr<ModelWeights> LoadWeights(const std::string& dir, const ModelConfig& config);

}  // namespace qcal

#endif  // QCAL_WORKER_MODEL_WEIGHTS_H_
