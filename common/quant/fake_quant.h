// The scalar side of mllm's simulated W8A8 (quantization_simulation.py:
// W8A8LinearStatic with per-tensor weights and static per-tensor activation scales):
// the quantization steps, computed in float32 exactly as PyTorch computes them on a
// float32 tensor on the CPU (IEEE float32 operations, round half to even).
//
//   weight step  = max(absmax|W|, 1e-5) / 127        (bias alike, with its own absmax)
//   input step   = round(max(scale, 1e-5) / 127 * 100000) / 100000   ("5 decimals")
//   output step  = max(scale, 1e-5) / 127
//
// and a value x quantizes to round(x / step) (clamped to [-128, 127] when clipped),
// dequantizes to that times step.
//
// Note: PyTorch on CUDA computes a tensor divided by a Python number as a product with
// the float32 reciprocal, so mllm run on a GPU may get the steps one float32 ulp
// apart from these (and, rarely, a value on a rounding boundary one step apart).
// An input step that rounds to 0 (scale below about 6.35e-4) makes mllm's simulation
// divide by zero; callers see step 0 and must treat it as degenerate.
//
// No libtorch. Header-only, thread-safe.
#ifndef QCAL_COMMON_QUANT_FAKE_QUANT_H_
#define QCAL_COMMON_QUANT_FAKE_QUANT_H_

#include <algorithm>
#include <cmath>

namespace qcal::quant {

inline constexpr float kQMax = 127.0f;
inline constexpr float kQMin = -128.0f;
inline constexpr float kMinScale = 1e-5f;

// max(absmax, 1e-5) / 127.
inline float WeightStep(float absmax) { return std::max(absmax, kMinScale) / kQMax; }

// max(scale, 1e-5) / 127, then rounded to 5 decimals (round half to even).
inline float InputStep(float scale) {
  const float s = std::max(scale, kMinScale) / kQMax;
  return std::nearbyint(s * 100000.0f) / 100000.0f;
}

// max(scale, 1e-5) / 127.
inline float OutputStep(float scale) { return std::max(scale, kMinScale) / kQMax; }

// Quantize-dequantize one value at `step` (> 0), clamped to the int8 range if `clamp`.
inline float FakeQuantize(float x, float step, bool clamp) {
  float q = std::nearbyint(x / step);
  if (clamp) q = std::min(std::max(q, kQMin), kQMax);
  return q * step;
}

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_FAKE_QUANT_H_
