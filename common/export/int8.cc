// Weight quantization formulas (export.h): mllm's per-tensor / per-channel absmax and
// compressed-tensors' symmetric int8.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/export/export.h"

namespace qcal::exporter {
namespace {

float AbsMax(const float* w, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(w[i]));
  return m;
}

// round-half-even (the default rounding mode, as torch.round) of w / scale, clamped
// to the int8 range.
void QuantizeRow(const float* w, int64_t n, float scale, int8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(w[i] / scale);
    q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, r)));
  }
}

float MllmScale(float absmax) { return std::max(absmax, 1e-5f) / 127.0f; }

// Each row of a row-major [rows, cols] w at its own scale, scale_of(row absmax).
QuantizedTensor QuantizeRows(const std::vector<float>& w, int64_t rows, int64_t cols,
                             float (*scale_of)(float)) {
  QuantizedTensor out;
  out.q.resize(w.size());
  out.scales.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    out.scales[r] = scale_of(AbsMax(row, cols));
    QuantizeRow(row, cols, out.scales[r], out.q.data() + r * cols);
  }
  return out;
}

}  // namespace

QuantizedTensor QuantizePerTensorMllm(const std::vector<float>& w) {
  QuantizedTensor out;
  const int64_t n = static_cast<int64_t>(w.size());
  out.scales = {MllmScale(AbsMax(w.data(), n))};
  out.q.resize(w.size());
  QuantizeRow(w.data(), n, out.scales[0], out.q.data());
  return out;
}

QuantizedTensor QuantizePerChannelMllm(const std::vector<float>& w, int64_t rows,
                                       int64_t cols) {
  return QuantizeRows(w, rows, cols, MllmScale);
}

float CompressedTensorsScale(float absmax) { return std::max(absmax / 127.5f, FLT_EPSILON); }

QuantizedTensor QuantizePerChannelCompressed(const std::vector<float>& w, int64_t rows,
                                             int64_t cols) {
  return QuantizeRows(w, rows, cols, CompressedTensorsScale);
}

}  // namespace qcal::exporter
