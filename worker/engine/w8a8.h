// Simulated W8A8 inference with mllm's W8A8LinearStatic semantics
// (tools/convertor/profiling_activation/utils/quantization_simulation.py), as a
// LinearTransform plugged into the unchanged forward pass. Float32 throughout:
//   weight: per tensor, step = max(absmax|W|, 1e-5) / 127, W = round(W / step) * step;
//           the bias likewise with its own absmax;
//   input:  step = max(input_scale, 1e-5) / 127 rounded to 5 decimals; x = round(x /
//           step), clamped to [-128, 127] only when clip_input, times step;
//   y = x W^T + b with the fake-quantized weight and bias;
//   output: step = max(output_scale, 1e-5) / 127 (not rounded); same with clip_output.
// Only the decoder's linears are quantized (mllm quantizes model.model's modules):
// lm_head stays float. Steps are computed as common/quant/fake_quant.h describes;
// divisions are true float32 divisions on every device.
//
// libtorch; internal to worker/engine. Thread-safety: both classes are immutable after
// Create; Apply may run concurrently.
#ifndef QCAL_WORKER_ENGINE_W8A8_H_
#define QCAL_WORKER_ENGINE_W8A8_H_

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "common/quant/clip.h"
#include "worker/model/causal_lm.h"

namespace qcal {

// True for the linears the simulation quantizes (all but lm_head).
bool IsW8A8Quantized(const LinearModule& linear);

// The fake-quantized float32 weight and bias of every quantized linear of a model, on
// its device. Computed once per model and shared by every threshold's simulation
// (memory: one float32 copy of the decoder's linear weights).
class W8A8Weights {
 public:
  // Errors: INTERNAL for a libtorch failure.
  static absl::StatusOr<std::unique_ptr<W8A8Weights>> Create(const CausalLM& model);

  // Undefined for a linear that is not quantized (and for the bias of one without).
  // Precondition: 0 <= index < model.linears().size().
  const at::Tensor& weight(int index) const { return weights_[index]; }
  const at::Tensor& bias(int index) const { return biases_[index]; }

 private:
  W8A8Weights() = default;
  std::vector<at::Tensor> weights_, biases_;
};

class W8A8Simulation : public LinearTransform {
 public:
  // `clips` holds the decisions and scales by linear name (quant::DecideClips' linears,
  // any order). Every quantized linear of `model` must be listed; lm_head's entry, if
  // any, is ignored. `weights` (not owned) must be W8A8Weights::Create(model) and
  // outlive the simulation. INVALID_ARGUMENT names a missing linear, a name that is
  // not a linear of the model, or an input scale whose step rounds to 0 (mllm's
  // simulation would divide by zero there); INTERNAL for a libtorch failure.
  static absl::StatusOr<std::unique_ptr<W8A8Simulation>> Create(
      const CausalLM& model, const W8A8Weights* weights,
      const std::vector<quant::LinearClip>& clips);

  // The simulated linear; undefined (the float computation) for lm_head. `w` and `b`
  // are ignored in favour of the fake-quantized ones.
  at::Tensor Apply(int index, const at::Tensor& x, const at::Tensor& w,
                   const at::Tensor& b) const override;

  // The stages of Apply, exposed for tests. Precondition: linear `index` is quantized.
  at::Tensor QuantizeInput(int index, const at::Tensor& x) const;
  at::Tensor QuantizeOutput(int index, const at::Tensor& y) const;
  float input_step(int index) const { return params_[index].input_step; }
  float output_step(int index) const { return params_[index].output_step; }

 private:
  struct Params {
    bool quantized = false;
    bool clip_input = false, clip_output = false;
    float input_step = 0, output_step = 0;
    at::Tensor input_step_t, output_step_t;  // 0-dim float32 on the device
  };
  W8A8Simulation() = default;
  const W8A8Weights* weights_ = nullptr;
  std::vector<Params> params_;
};

}  // namespace qcal

#endif  // QCAL_WORKER_ENGINE_W8A8_H_
