#include "worker/model/causal_lm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/blocks.h"

namespace qcal {

struct CausalLM::Impl {
  at::Device device{at::kCPU};
  bool bf16 = false;
  bool batch_invariant = true;
  ModelWeights w;
  // Per-layer indices into linears_ by role, for observers.
  struct LayerIdx {
    int q, k, v, o, gate, up, down;
  };
  std::vector<LayerIdx> idx;
  int lm_head_idx = -1;
  // Weight and bias of every linear, by index (pointers into w; bias null when none).
  struct LinearTensors {
    const at::Tensor* weight = nullptr;
    const at::Tensor* bias = nullptr;
  };
  std::vector<LinearTensors> tensors;
};

CausalLM::CausalLM() : impl_(std::make_unique<Impl>()) {}
CausalLM::~CausalLM() = default;

const at::Device& CausalLM::device() const { return impl_->device; }

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Load(const std::string& dir,
                                                         const ComputeOptions& options) {
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  std::unique_ptr<CausalLM> m(new CausalLM());
  m->config_ = config;
  m->linears_ = LinearModules(config);
  Impl& impl = *m->impl_;
  try {
    impl.device = at::Device(options.device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device \"", options.device, "\" is not a device (cpu or cuda:N)"));
  }
  if (impl.device.is_cuda() && !at::hasCUDA()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", options.device,
        " requested but this libtorch has no CUDA support (build with Torch_DIR pointing at a "
        "CUDA libtorch)"));
  }
  if (!impl.device.is_cpu() && !impl.device.is_cuda()) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported device ", options.device));
  }
  impl.bf16 = options.bf16;
  impl.batch_invariant = options.batch_invariant;
  QCAL_ASSIGN_OR_RETURN(impl.w, LoadWeights(dir, config));
  try {
    c10::InferenceMode guard;
    auto place = [&](at::Tensor& t, bool matmul_weight) {
      if (!t.defined()) return;
      t = t.to(impl.device);
      if (matmul_weight && impl.bf16) t = t.to(at::kBFloat16);
    };
    const bool tied_alias = impl.w.lm_head.is_same(impl.w.embed);
    place(impl.w.embed, false);
    place(impl.w.final_norm, false);
    if (tied_alias && !impl.bf16) {
      impl.w.lm_head = impl.w.embed;
    } else {
      if (tied_alias) impl.w.lm_head = impl.w.embed;
      place(impl.w.lm_head, true);
    }
    for (auto& l : impl.w.layers) {
      place(l.attn_norm, false);
      place(l.mlp_norm, false);
      for (at::Tensor* t : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) place(*t, true);
      for (at::Tensor* t : {&l.q_bias, &l.k_bias, &l.v_bias}) place(*t, true);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("moving weights of ", dir, " to ", options.device,
                                            ": ", e.what()));
  }
  std::map<std::string, int> by_name;
  for (size_t i = 0; i < m->linears_.size(); ++i) by_name[m->linears_[i].name] = static_cast<int>(i);
  auto index_of = [&](TensorRole role, int64_t layer) {
    auto it = by_name.find(config.ModuleName(role, layer));
    return it == by_name.end() ? -1 : it->second;
  };
  for (int64_t i = 0; i < config.num_layers; ++i) {
    impl.idx.push_back({index_of(TensorRole::kQ, i), index_of(TensorRole::kK, i),
                        index_of(TensorRole::kV, i), index_of(TensorRole::kO, i),
                        index_of(TensorRole::kGate, i), index_of(TensorRole::kUp, i),
                        index_of(TensorRole::kDown, i)});
  }
  impl.lm_head_idx = index_of(TensorRole::kLmHead, 0);
  impl.tensors.resize(m->linears_.size());
  auto set_tensors = [&](int index, const at::Tensor& w, const at::Tensor& b) {
    if (index < 0) return;
    impl.tensors[index] = {&w, b.defined() ? &b : nullptr};
  };
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const LayerWeights& lw = impl.w.layers[i];
    const Impl::LayerIdx& ix = impl.idx[i];
    set_tensors(ix.q, lw.q, lw.q_bias);
    set_tensors(ix.k, lw.k, lw.k_bias);
    set_tensors(ix.v, lw.v, lw.v_bias);
    set_tensors(ix.o, lw.o, at::Tensor());
    set_tensors(ix.gate, lw.gate, at::Tensor());
    set_tensors(ix.up, lw.up, at::Tensor());
    set_tensors(ix.down, lw.down, at::Tensor());
  }
  set_tensors(impl.lm_head_idx, impl.w.lm_head, at::Tensor());
  return m;
}

absl::StatusOr<at::Tensor> CausalLM::LinearWeight(int index) const {
  if (index < 0 || static_cast<size_t>(index) >= impl_->tensors.size() ||
      impl_->tensors[index].weight == nullptr) {
    return absl::OutOfRangeError(absl::StrCat("no linear module with index ", index));
  }
  return *impl_->tensors[index].weight;
}

absl::StatusOr<at::Tensor> CausalLM::LinearBias(int index) const {
  if (index < 0 || static_cast<size_t>(index) >= impl_->tensors.size() ||
      impl_->tensors[index].weight == nullptr) {
    return absl::OutOfRangeError(absl::StrCat("no linear module with index ", index));
  }
  const at::Tensor* b = impl_->tensors[index].bias;
  return b == nullptr ? at::Tensor() : *b;
}

absl::StatusOr<ForwardOutput> CausalLM::Forward(const at::Tensor& input_ids,
                                                const at::Tensor& attention_mask,
                                                LinearObserver* observer,
                                                bool output_hidden_states,
                                                const LinearTransform* transform) const {
  const ModelConfig& c = config_;
  if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.size(0) == 0 ||
      input_ids.size(1) == 0) {
    return absl::InvalidArgumentError("input_ids must be a non-empty [batch, length] tensor");
  }
  if (attention_mask.defined() && attention_mask.sizes() != input_ids.sizes()) {
    return absl::InvalidArgumentError("attention_mask must have the shape of input_ids");
  }
  try {
    c10::InferenceMode guard;
    const Impl& impl = *impl_;
    at::Tensor ids = input_ids.to(at::kCPU, at::kLong).contiguous();
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", lo < 0 ? lo : hi,
                                                     " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
    const int64_t B = ids.size(0), T = ids.size(1);
    if (T > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("sequence length ", T,
                                                     " exceeds max_position_embeddings ",
                                                     c.max_position_embeddings));
    }
    std::vector<int64_t> lengths(B, T);
    if (attention_mask.defined()) {
      at::Tensor m = attention_mask.to(at::kCPU, at::kLong).contiguous();
      auto ma = m.accessor<int64_t, 2>();
      for (int64_t b = 0; b < B; ++b) {
        int64_t len = 0;
        while (len < T && ma[b][len] == 1) ++len;
        for (int64_t t = len; t < T; ++t) {
          if (ma[b][t] != 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                "attention_mask row ", b, " is not right padding (ones, then zeros)"));
          }
        }
        if (len == 0) {
          return absl::InvalidArgumentError(absl::StrCat("attention_mask row ", b, " is all padding"));
        }
        lengths[b] = len;
      }
    }
    if (!impl.batch_invariant || B == 1) {
      const bool padded = *std::min_element(lengths.begin(), lengths.end()) < T;
      return ForwardPadded(ids.to(impl.device), padded ? attention_mask.to(impl.device) : at::Tensor(),
                           observer, output_hidden_states, transform);
    }
    // One lone pass per sequence, outputs scattered into the padded layout.
    ForwardOutput out;
    for (int64_t b = 0; b < B; ++b) {
      at::Tensor row = ids.slice(0, b, b + 1).slice(1, 0, lengths[b]).to(impl.device);
      QCAL_ASSIGN_OR_RETURN(ForwardOutput one, ForwardPadded(row, at::Tensor(), observer,
                                                             output_hidden_states, transform));
      if (b == 0) {
        out.logits = at::zeros({B, T, one.logits.size(-1)}, one.logits.options());
        for (const auto& h : one.hidden_states) {
          out.hidden_states.push_back(at::zeros({B, T, h.size(-1)}, h.options()));
        }
      }
      out.logits[b].slice(0, 0, lengths[b]).copy_(one.logits[0]);
      for (size_t k = 0; k < one.hidden_states.size(); ++k) {
        out.hidden_states[k][b].slice(0, 0, lengths[b]).copy_(one.hidden_states[k][0]);
      }
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("forward pass failed: ", e.what()));
  }
}

absl::StatusOr<ForwardOutput> CausalLM::ForwardPadded(const at::Tensor& ids,
                                                      const at::Tensor& mask,
                                                      LinearObserver* observer,
                                                      bool output_hidden_states,
                                                      const LinearTransform* transform) const {
  const ModelConfig& c = config_;
  try {
    c10::InferenceMode guard;
    const Impl& impl = *impl_;
    const int64_t T = ids.size(1);

    absl::Status observer_status;
    Linear linear{observer, impl.bf16, &observer_status, transform};
    const Rotary rope = MakeRotary(c.head_dim, c.rope_theta, T, impl.device);
    const at::Tensor attn_bias = CausalMask(T, mask, c.sliding_window, impl.device);

    ForwardOutput out;
    at::Tensor h = at::embedding(impl.w.embed, ids);
    for (int64_t i = 0; i < c.num_layers; ++i) {
      if (output_hidden_states) out.hidden_states.push_back(h);
      const LayerWeights& lw = impl.w.layers[i];
      const Impl::LayerIdx& ix = impl.idx[i];
      AttentionWeights aw{lw.q, lw.k, lw.v, lw.o, lw.q_bias, lw.k_bias, lw.v_bias,
                          ix.q, ix.k, ix.v, ix.o};
      at::Tensor a = Attention(linear, aw, RmsNorm(h, lw.attn_norm, c.norm_eps), rope, attn_bias,
                               c.num_heads, c.num_kv_heads, c.head_dim);
      if (!observer_status.ok()) return observer_status;
      h = h + a;
      MlpWeights mw{lw.gate, lw.up, lw.down, ix.gate, ix.up, ix.down};
      at::Tensor m = GatedMlp(linear, mw, RmsNorm(h, lw.mlp_norm, c.norm_eps));
      if (!observer_status.ok()) return observer_status;
      h = h + m;
    }
    h = RmsNorm(h, impl.w.final_norm, c.norm_eps);
    if (output_hidden_states) out.hidden_states.push_back(h);
    out.logits = linear(impl.lm_head_idx, h, impl.w.lm_head, at::Tensor());
    if (!observer_status.ok()) return observer_status;
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("forward pass failed: ", e.what()));
  }
}

}  // namespace qcal
