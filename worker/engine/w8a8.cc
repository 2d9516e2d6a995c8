#include "worker/engine/w8a8.h"

#include <map>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"
#include "common/quant/fake_quant.h"

namespace qcal {
namespace {

// round(t / step) * step with mllm's per-tensor absmax step.
at::Tensor FakeQuantPerTensor(const at::Tensor& t) {
  at::Tensor f = t.to(at::kFloat);
  const float absmax = f.abs().max().item<float>();
  const at::Tensor step = at::scalar_tensor(quant::WeightStep(absmax), f.options());
  return f.div(step).round().mul(step).contiguous();
}

at::Tensor FakeQuantActivation(const at::Tensor& x, const at::Tensor& step, bool clamp) {
  at::Tensor q = x.div(step).round();
  if (clamp) q = q.clamp(quant::kQMin, quant::kQMax);
  return q.mul(step);
}

}  // namespace

bool IsW8A8Quantized(const LinearModule& linear) { return linear.role != TensorRole::kLmHead; }

absl::StatusOr<std::unique_ptr<W8A8Weights>> W8A8Weights::Create(const CausalLM& model) {
  std::unique_ptr<W8A8Weights> out(new W8A8Weights());
  const size_t n = model.linears().size();
  out->weights_.resize(n);
  out->biases_.resize(n);
  try {
    c10::InferenceMode guard;
    for (size_t i = 0; i < n; ++i) {
      if (!IsW8A8Quantized(model.linears()[i])) continue;
      absl::StatusOr<at::Tensor> w = model.LinearWeight(static_cast<int>(i));
      if (!w.ok()) return w.status();
      absl::StatusOr<at::Tensor> b = model.LinearBias(static_cast<int>(i));
      if (!b.ok()) return b.status();
      out->weights_[i] = FakeQuantPerTensor(*w);
      if (b->defined()) out->biases_[i] = FakeQuantPerTensor(*b);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("fake-quantizing weights: ", e.what()));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<W8A8Simulation>> W8A8Simulation::Create(
    const CausalLM& model, const W8A8Weights* weights,
    const std::vector<quant::LinearClip>& clips) {
  const std::vector<LinearModule>& linears = model.linears();
  std::map<std::string, int> index;
  for (size_t i = 0; i < linears.size(); ++i) index[linears[i].name] = static_cast<int>(i);
  std::unique_ptr<W8A8Simulation> sim(new W8A8Simulation());
  sim->weights_ = weights;
  sim->params_.resize(linears.size());
  std::vector<bool> seen(linears.size(), false);
  try {
    c10::InferenceMode guard;
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
    for (const quant::LinearClip& c : clips) {
      auto it = index.find(c.name);
      if (it == index.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", c.name, "\" is not a linear module of the model"));
      }
      const int i = it->second;
      seen[i] = true;
      if (!IsW8A8Quantized(linears[i])) continue;
      Params& p = sim->params_[i];
      p.quantized = true;
      p.clip_input = c.clip_input;
      p.clip_output = c.clip_output;
      p.input_step = quant::InputStep(c.input_scale);
      p.output_step = quant::OutputStep(c.output_scale);
      if (!(p.input_step > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input scale ", c.input_scale, " of ", c.name,
            " gives a zero quantization step after rounding to 5 decimals (mllm's "
            "simulation would divide by zero)"));
      }
      p.input_step_t = at::scalar_tensor(p.input_step, f32);
      p.output_step_t = at::scalar_tensor(p.output_step, f32);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("W8A8 simulation setup: ", e.what()));
  }
  for (size_t i = 0; i < linears.size(); ++i) {
    if (IsW8A8Quantized(linears[i]) && !seen[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("no scales for linear ", linears[i].name));
    }
  }
  return sim;
}

at::Tensor W8A8Simulation::QuantizeInput(int index, const at::Tensor& x) const {
  const Params& p = params_[index];
  return FakeQuantActivation(x, p.input_step_t, p.clip_input);
}

at::Tensor W8A8Simulation::QuantizeOutput(int index, const at::Tensor& y) const {
  const Params& p = params_[index];
  return FakeQuantActivation(y, p.output_step_t, p.clip_output);
}

at::Tensor W8A8Simulation::Apply(int index, const at::Tensor& x, const at::Tensor& w,
                                 const at::Tensor& b) const {
  if (!params_[index].quantized) return at::Tensor();
  at::Tensor y = at::linear(QuantizeInput(index, x.to(at::kFloat)), weights_->weight(index),
                            weights_->bias(index));
  return QuantizeOutput(index, y);
}

}  // namespace qcal
