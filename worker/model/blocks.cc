#include "worker/model/blocks.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

namespace qcal {

at::Tensor Linear::operator()(int index, const at::Tensor& x, const at::Tensor& w,
                              const at::Tensor& b) const {
  at::Tensor y;
  if (transform != nullptr) y = transform->Apply(index, x, w, b);
  if (!y.defined()) {
    y = bf16 ? at::linear(x.to(at::kBFloat16), w, b).to(at::kFloat) : at::linear(x, w, b);
  }
  if (observer != nullptr && status->ok()) *status = observer->OnLinear(index, x, y);
  return y;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor variance = x.pow(2).mean(-1, /*keepdim=*/true);
  return w * (x * at::rsqrt(variance + eps));
}

Rotary MakeRotary(int64_t head_dim, double theta, int64_t T, const at::Device& device) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  // 1 / theta ** (arange(0, d, 2).float() / d), as HF computes inv_freq.
  at::Tensor exponent = at::arange(0, head_dim, 2, f32.dtype(at::kLong)).to(at::kFloat) /
                        static_cast<double>(head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(theta, exponent);
  at::Tensor t = at::arange(T, f32.dtype(at::kLong)).to(at::kFloat);
  at::Tensor freqs = at::outer(t, inv_freq);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor CausalMask(int64_t T, const at::Tensor& attention_mask, int64_t window,
                      const at::Device& device) {
  const auto opts = at::TensorOptions().device(device);
  at::Tensor i = at::arange(T, opts.dtype(at::kLong)).unsqueeze(1);
  at::Tensor j = at::arange(T, opts.dtype(at::kLong)).unsqueeze(0);
  at::Tensor blocked = j > i;  // [T, T]
  if (window > 0) blocked = blocked | (j < i - window);
  blocked = blocked.unsqueeze(0).unsqueeze(0);  // [1, 1, T, T]
  if (attention_mask.defined()) {
    at::Tensor pad = attention_mask.eq(0).unsqueeze(1).unsqueeze(1);  // [B, 1, 1, T]
    blocked = blocked | pad;
  }
  const float min = std::numeric_limits<float>::lowest();
  return at::zeros(blocked.sizes(), opts.dtype(at::kFloat)).masked_fill(blocked, min);
}

namespace {

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// [B, kv, T, d] -> [B, kv * n_rep, T, d], as HF's repeat_kv.
at::Tensor RepeatKv(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const auto B = x.size(0), kv = x.size(1), T = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({B, kv, n_rep, T, d}).reshape({B, kv * n_rep, T, d});
}

}  // namespace

at::Tensor Attention(const Linear& linear, const AttentionWeights& w, const at::Tensor& x,
                     const Rotary& rope, const at::Tensor& bias, int64_t heads,
                     int64_t kv_heads, int64_t head_dim) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = linear(w.q_idx, x, w.q, w.q_bias).view({B, T, heads, head_dim}).transpose(1, 2);
  at::Tensor k = linear(w.k_idx, x, w.k, w.k_bias).view({B, T, kv_heads, head_dim}).transpose(1, 2);
  at::Tensor v = linear(w.v_idx, x, w.v, w.v_bias).view({B, T, kv_heads, head_dim}).transpose(1, 2);
  at::Tensor cos = rope.cos.unsqueeze(0).unsqueeze(0);  // [1, 1, T, d]
  at::Tensor sin = rope.sin.unsqueeze(0).unsqueeze(0);
  q = (q * cos) + (RotateHalf(q) * sin);
  k = (k * cos) + (RotateHalf(k) * sin);
  k = RepeatKv(k, heads / kv_heads);
  v = RepeatKv(v, heads / kv_heads);
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(head_dim));
  scores = scores + bias;
  at::Tensor probs = at::softmax(scores, -1, at::kFloat);
  at::Tensor ctx = at::matmul(probs, v).transpose(1, 2).contiguous().reshape({B, T, heads * head_dim});
  return linear(w.o_idx, ctx, w.o, at::Tensor());
}

at::Tensor GatedMlp(const Linear& linear, const MlpWeights& w, const at::Tensor& x) {
  // HF evaluates gate_proj before up_proj; observers see them in that order.
  if (w.gate.defined()) {
    at::Tensor gate = at::silu(linear(w.gate_idx, x, w.gate, at::Tensor()));
    at::Tensor up = linear(w.up_idx, x, w.up, at::Tensor());
    return linear(w.down_idx, gate * up, w.down, at::Tensor());
  }
  at::Tensor up = at::silu(linear(w.up_idx, x, w.up, at::Tensor()));
  return linear(w.down_idx, up, w.down, at::Tensor());
}

}  // namespace qcal
