// A decoder-only causal language model (llama, mistral, qwen2) in libtorch, assembled
// from the architecture table of common/model_config.h and shared blocks.
//
// Numerics follow Hugging Face transformers 4.40 eager attention in float32, op for op,
// so logits, hidden states and every linear's input and output match HF within float
// rounding. Batches are right-padded with an attention mask; padded positions produce
// values that callers must ignore.
//
// Thread-safety: Forward is const and may be called from one thread at a time per
// object (libtorch's intra-op pool is used inside). Every libtorch error is caught here
// and returned as a status.
#ifndef QCAL_WORKER_MODEL_CAUSAL_LM_H_
#define QCAL_WORKER_MODEL_CAUSAL_LM_H_

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "worker/model/weights.h"

namespace qcal {

struct ComputeOptions {
  // "cpu" or "cuda:N" (needs a CUDA build of libtorch, e.g. through Torch_DIR).
  std::string device = "cpu";
  // Linear layers in bfloat16 (oneDNN/AMX on CPU), everything else in float32.
  // Off by default: float32 is what the reference tolerances are stated for.
  bool bf16 = false;
  // Run each sequence of a batch at its own length (its matmuls have exactly the
  // shapes of a lone run), so every value a sequence produces is bitwise independent
  // of the batch it is in. BLAS results depend on the matrix shape and on a row's
  // position, so a single padded GEMM over the whole batch cannot promise that.
  // false: one padded pass over the whole batch (fewer, larger kernels; useful on
  // GPUs), equal to the lone runs only within float rounding.
  bool batch_invariant = true;
};

// Sees the full input and output of every linear module, in forward order.
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  // `index` indexes CausalLM::linears(). input [B, T, in], output [B, T, out], float32
  // on the compute device. A non-OK status aborts the forward pass with that status.
  virtual absl::Status OnLinear(int index, const at::Tensor& input, const at::Tensor& output) = 0;
};

// Replaces the computation of linear modules (e.g. a simulated W8A8 linear), so that a
// variant of the model runs the same forward code. Must be immutable while in use:
// Apply is const and is called from within Forward (which may run on any thread).
class LinearTransform {
 public:
  virtual ~LinearTransform() = default;
  // Computes linear `index` (indexes CausalLM::linears()) for input x [B, T, in]
  // float32 on the compute device, given the model's weight w [out, in] and bias b
  // (undefined when the module has none) as stored (bfloat16 with ComputeOptions::bf16).
  // Returns y [B, T, out] float32 on the same device, or an undefined tensor to let the
  // default computation (x W^T + b) run for this linear. May throw c10::Error (the
  // forward pass then returns INTERNAL with its message).
  virtual at::Tensor Apply(int index, const at::Tensor& x, const at::Tensor& w,
                           const at::Tensor& b) const = 0;
};

struct ForwardOutput {
  at::Tensor logits;  // [B, T, V] float32
  // With output_hidden_states: HF's hidden_states tuple (embedding output, each layer's
  // output but the last, then the final norm's output); each [B, T, H].
  std::vector<at::Tensor> hidden_states;
};

class CausalLM {
 public:
  // Reads config.json and the weights of `dir`. Errors: NOT_FOUND (no config or
  // weights), UNIMPLEMENTED (architecture), INVALID_ARGUMENT (bad or misshaped
  // tensor), each naming the file and tensor.
  static absl::StatusOr<std::unique_ptr<CausalLM>> Load(const std::string& dir,
                                                        const ComputeOptions& options = {});

  const ModelConfig& config() const { return config_; }
  // Every linear module in forward order (the order OnLinear fires).
  const std::vector<LinearModule>& linears() const { return linears_; }
  const at::Device& device() const;

  // input_ids: [B, T] integer ids in [0, vocab). attention_mask: undefined (all valid)
  // or [B, T] with 1 for real tokens and 0 for right padding (a row of ones then
  // zeros; anything else is INVALID_ARGUMENT). Positions are 0..T-1. Outputs at padded
  // positions are unspecified (zero with batch_invariant). With batch_invariant the
  // observer is called once per sequence and linear, with that sequence's valid rows
  // only ([1, len, features]), sequences in batch order; otherwise once per linear
  // with the whole padded batch. With a `transform`, every linear is computed by it
  // (see LinearTransform) and the observer sees its output; without one the forward is
  // exactly the plain model's. `transform` is not owned.
  absl::StatusOr<ForwardOutput> Forward(const at::Tensor& input_ids,
                                        const at::Tensor& attention_mask,
                                        LinearObserver* observer = nullptr,
                                        bool output_hidden_states = false,
                                        const LinearTransform* transform = nullptr) const;

  // The weight [out, in] and bias ([out], undefined when none) of linear `index`, as
  // stored on the compute device (bfloat16 with ComputeOptions::bf16; lm_head is the
  // embedding when tied). OUT_OF_RANGE for a bad index.
  absl::StatusOr<at::Tensor> LinearWeight(int index) const;
  absl::StatusOr<at::Tensor> LinearBias(int index) const;

  ~CausalLM();

 private:
  CausalLM();
  // The padded pass over the whole batch (HF's computation).
  absl::StatusOr<ForwardOutput> ForwardPadded(const at::Tensor& ids, const at::Tensor& mask,
                                              LinearObserver* observer,
                                              bool output_hidden_states,
                                              const LinearTransform* transform) const;
  struct Impl;
  ModelConfig config_;
  std::vector<LinearModule> linears_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcal

#endif  // QCAL_WORKER_MODEL_CAUSAL_LM_H_
