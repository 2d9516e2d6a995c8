// Shared building blocks of the decoder forward pass (norms, rotary embeddings,
// attention, MLP). Each architecture's forward is assembled from these; they follow
// Hugging Face transformers 4.40 eager code op for op so float32 results agree to
// rounding. Internal to worker/model.
#ifndef QCAL_WORKER_MODEL_BLOCKS_H_
#define QCAL_WORKER_MODEL_BLOCKS_H_

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "worker/model/causal_lm.h"

namespace qcal {

// y = x W^T + b, reporting (x, y) to the observer. With bf16 the matmul runs in
// bfloat16 (weights already stored so) and y is returned in float32. An observer error
// is stored in *status and later linears are not reported. With a transform, y is
// transform->Apply(...) unless that returns an undefined tensor.
struct Linear {
  LinearObserver* observer;
  bool bf16;
  absl::Status* status;
  const LinearTransform* transform = nullptr;
  at::Tensor operator()(int index, const at::Tensor& x, const at::Tensor& w,
                        const at::Tensor& b) const;
};

// HF LlamaRMSNorm: w * (x * rsqrt(mean(x^2) + eps)), in float32.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

struct Rotary {
  at::Tensor cos, sin;  // [T, head_dim]
};
// Rotary tables for positions 0..T-1, computed as HF computes them in float32.
Rotary MakeRotary(int64_t head_dim, double theta, int64_t T, const at::Device& device);

// Additive attention bias [B or 1, 1, T, T]: 0 where query i may see key j (j <= i,
// key not padding, and i - window <= j when window > 0), the float32 minimum elsewhere,
// exactly as HF builds it.
at::Tensor CausalMask(int64_t T, const at::Tensor& attention_mask, int64_t window,
                      const at::Device& device);

struct AttentionWeights {
  const at::Tensor &q, &k, &v, &o, &q_bias, &k_bias, &v_bias;
  int q_idx, k_idx, v_idx, o_idx;
};
// Grouped-query self-attention with rotary embeddings; x [B, T, H] -> [B, T, H].
at::Tensor Attention(const Linear& linear, const AttentionWeights& w, const at::Tensor& x,
                     const Rotary& rope, const at::Tensor& bias, int64_t heads,
                     int64_t kv_heads, int64_t head_dim);

struct MlpWeights {
  const at::Tensor &gate, &up, &down;  // gate undefined: down(act(up(x)))
  int gate_idx, up_idx, down_idx;
};
// down(silu(gate(x)) * up(x)).
at::Tensor GatedMlp(const Linear& linear, const MlpWeights& w, const at::Tensor& x);

}  // namespace qcal

#endif  // QCAL_WORKER_MODEL_BLOCKS_H_
