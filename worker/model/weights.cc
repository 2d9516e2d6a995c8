#include "worker/model/weights.h"

#include <memory>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "common/model_files.h"
#include "common/status_macros.h"

namespace qcal {
namespace {

// Copies (and widens to float32) one validated tensor out of its mapping.
absl::StatusOr<at::Tensor> ToFloatTensor(const ModelFiles& files, const ExpectedTensor& e) {
  QCAL_ASSIGN_OR_RETURN(auto found, files.FindChecked(e));
  const TensorView& view = found.second;
  at::ScalarType type = at::kFloat;
  switch (view.dtype) {
    case DType::kF16: type = at::kHalf; break;
    case DType::kBF16: type = at::kBFloat16; break;
    case DType::kF64: type = at::kDouble; break;
    default: break;
  }
  at::Tensor mapped = at::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                    at::TensorOptions().dtype(type));
  return mapped.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

}  // namespace

absl::StatusOr<ModelWeights> LoadWeights(const std::string& dir, const ModelConfig& c) {
  QCAL_ASSIGN_OR_RETURN(auto files, ModelFiles::Open(dir));
  ModelWeights w;
  w.layers.resize(c.num_layers);
  for (const ExpectedTensor& e : ExpectedTensors(c)) {
    if (e.optional && !files->Has(e.name)) continue;  // tied lm_head: the embedding
    QCAL_ASSIGN_OR_RETURN(at::Tensor t, ToFloatTensor(*files, e));
    const bool bias = e.name.size() > 5 && e.name.compare(e.name.size() - 5, 5, ".bias") == 0;
    LayerWeights* l = e.layer >= 0 ? &w.layers[e.layer] : nullptr;
    switch (e.role) {
      case TensorRole::kTokenEmbedding: w.embed = t; break;
      case TensorRole::kFinalNorm: w.final_norm = t; break;
      case TensorRole::kLmHead: w.lm_head = t; break;
      case TensorRole::kAttnNorm: l->attn_norm = t; break;
      case TensorRole::kMlpNorm: l->mlp_norm = t; break;
      case TensorRole::kQ: (bias ? l->q_bias : l->q) = t; break;
      case TensorRole::kK: (bias ? l->k_bias : l->k) = t; break;
      case TensorRole::kV: (bias ? l->v_bias : l->v) = t; break;
      case TensorRole::kO: l->o = t; break;
      case TensorRole::kGate: l->gate = t; break;
      case TensorRole::kUp: l->up = t; break;
      case TensorRole::kDown: l->down = t; break;
    }
  }
  if (!w.lm_head.defined()) w.lm_head = w.embed;
  return w;
}

}  // namespace qcal
