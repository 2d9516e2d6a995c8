#include "bench/model_gen.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal::bench {
namespace {

// Encodes float32 values in `dtype` (round to nearest even for the 16-bit types).
std::string Encode(const std::vector<float>& v, DType dtype) {
  std::string out;
  if (dtype == DType::kF32) {
    out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    return out;
  }
  out.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    uint16_t h;
    if (dtype == DType::kBF16) {
      h = static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    } else {  // F16; values here are small and normal
      const uint32_t sign = (bits >> 16) & 0x8000u;
      const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xff) - 127 + 15;
      uint32_t mant = bits & 0x7fffffu;
      if (exp <= 0) {
        h = static_cast<uint16_t>(sign);
      } else if (exp >= 31) {
        h = static_cast<uint16_t>(sign | 0x7bffu);
      } else {
        uint32_t m = mant >> 13;
        const uint32_t rest = mant & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (m & 1u))) ++m;
        h = static_cast<uint16_t>(sign | ((static_cast<uint32_t>(exp) << 10) + m));
      }
    }
    std::memcpy(&out[2 * i], &h, 2);
  }
  return out;
}

}  // namespace

absl::StatusOr<RandomModelSpec> PresetSpec(const std::string& preset, const std::string& model_type) {
  RandomModelSpec s;
  s.model_type = model_type;
  if (preset == "tiny") {
    s.vocab_size = 4096, s.hidden_size = 64, s.intermediate_size = 160, s.num_layers = 2;
    s.num_heads = 4, s.num_kv_heads = 2;
  } else if (preset == "25m") {
    s.vocab_size = 8192, s.hidden_size = 512, s.intermediate_size = 1536, s.num_layers = 6;
    s.num_heads = 8, s.num_kv_heads = 4;
  } else if (preset == "100m") {
    s.vocab_size = 16384, s.hidden_size = 768, s.intermediate_size = 2304, s.num_layers = 12;
    s.num_heads = 12, s.num_kv_heads = 4;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown preset \"", preset, "\" (tiny, 25m, 100m)"));
  }
  if (model_type == "mistral") s.sliding_window = 256;
  return s;
}

int64_t ParameterCount(const RandomModelSpec& s) {
  const int64_t d = s.hidden_size / s.num_heads;
  const int64_t per_layer = s.hidden_size * (s.num_heads * d) * 2 +
                            s.hidden_size * (s.num_kv_heads * d) * 2 +
                            3 * s.hidden_size * s.intermediate_size + 2 * s.hidden_size;
  int64_t n = s.vocab_size * s.hidden_size * (s.tie_word_embeddings ? 1 : 2) +
              s.num_layers * per_layer + s.hidden_size;
  if (s.model_type == "qwen2") n += s.num_layers * (s.num_heads + 2 * s.num_kv_heads) * d;
  return n;
}

absl::Status WriteRandomModel(const std::string& dir, const RandomModelSpec& s) {
  nlohmann::ordered_json cfg = {
      {"architectures", {""}},
      {"model_type", s.model_type},
      {"vocab_size", s.vocab_size},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", s.num_heads},
      {"num_key_value_heads", s.num_kv_heads},
      {"max_position_embeddings", s.max_position_embeddings},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", s.model_type == "qwen2" ? 1e6 : 1e4},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", s.tie_word_embeddings},
      {"torch_dtype", s.dtype == "F32" ? "float32" : s.dtype == "F16" ? "float16" : "bfloat16"},
  };
  if (s.sliding_window > 0) cfg["sliding_window"] = s.sliding_window;
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(cfg.dump(), "generated config"));
  cfg["architectures"] = {config.spec().hf_class};
  QCAL_ASSIGN_OR_RETURN(DType dtype, ParseDType(s.dtype));
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError("dtype must be F32, F16 or BF16");
  }

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir));
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(s.init_std));
  std::vector<TensorToWrite> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool ones) {
    int64_t n = 1;
    for (int64_t x : shape) n *= x;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = ones ? 1.0f : normal(rng);
    TensorToWrite t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.bytes = Encode(v, dtype);
    tensors.push_back(std::move(t));
  };
  const int64_t h = config.hidden_size, f = config.intermediate_size, v = config.vocab_size;
  const int64_t q = config.num_heads * config.head_dim, kv = config.num_kv_heads * config.head_dim;
  add(config.ModuleName(TensorRole::kTokenEmbedding) + ".weight", {v, h}, false);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    auto name = [&](TensorRole r, const char* suffix) { return config.ModuleName(r, i) + suffix; };
    add(name(TensorRole::kAttnNorm, ".weight"), {h}, true);
    add(name(TensorRole::kMlpNorm, ".weight"), {h}, true);
    add(name(TensorRole::kQ, ".weight"), {q, h}, false);
    add(name(TensorRole::kK, ".weight"), {kv, h}, false);
    add(name(TensorRole::kV, ".weight"), {kv, h}, false);
    if (config.spec().qkv_bias) {
      add(name(TensorRole::kQ, ".bias"), {q}, false);
      add(name(TensorRole::kK, ".bias"), {kv}, false);
      add(name(TensorRole::kV, ".bias"), {kv}, false);
    }
    add(name(TensorRole::kO, ".weight"), {h, q}, false);
    if (config.spec().gated_mlp) add(name(TensorRole::kGate, ".weight"), {f, h}, false);
    add(name(TensorRole::kUp, ".weight"), {f, h}, false);
    add(name(TensorRole::kDown, ".weight"), {h, f}, false);
  }
  add(config.ModuleName(TensorRole::kFinalNorm) + ".weight", {h}, true);
  if (!s.tie_word_embeddings) add(config.ModuleName(TensorRole::kLmHead) + ".weight", {v, h}, false);
  QCAL_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}));
  std::ofstream c(dir + "/config.json");
  c << cfg.dump(2) << "\n";
  if (!c) return absl::DataLossError(absl::StrCat("cannot write ", dir, "/config.json"));
  return absl::OkStatus();
}

}  // namespace qcal::bench
