#include "common/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/regular_file.h"
#include "nlohmann/json.hpp"

namespace qcal {
namespace {

// config.json files are a few kB; a larger one is not a config.
constexpr int64_t kMaxConfigBytes = 16 << 20;

using R = TensorRole;

// Llama-family naming, shared by llama, mistral and qwen2.
std::vector<ArchSpec::RoleName> LlamaNames() {
  return {
      {R::kTokenEmbedding, "model.embed_tokens"},
      {R::kFinalNorm, "model.norm"},
      {R::kLmHead, "lm_head"},
      {R::kAttnNorm, "model.layers.{i}.input_layernorm"},
      {R::kMlpNorm, "model.layers.{i}.post_attention_layernorm"},
      {R::kQ, "model.layers.{i}.self_attn.q_proj"},
      {R::kK, "model.layers.{i}.self_attn.k_proj"},
      {R::kV, "model.layers.{i}.self_attn.v_proj"},
      {R::kO, "model.layers.{i}.self_attn.o_proj"},
      {R::kGate, "model.layers.{i}.mlp.gate_proj"},
      {R::kUp, "model.layers.{i}.mlp.up_proj"},
      {R::kDown, "model.layers.{i}.mlp.down_proj"},
  };
}

std::vector<ArchSpec> BuildTable() {
  return {
      {Arch::kLlama, "llama", "LlamaForCausalLM", NormKind::kRmsNorm, Activation::kSilu,
       /*gated_mlp=*/true, /*qkv_bias=*/false, /*uses_sliding_window=*/false, LlamaNames()},
      {Arch::kMistral, "mistral", "MistralForCausalLM", NormKind::kRmsNorm, Activation::kSilu,
       /*gated_mlp=*/true, /*qkv_bias=*/false, /*uses_sliding_window=*/true, LlamaNames()},
      {Arch::kQwen2, "qwen2", "Qwen2ForCausalLM", NormKind::kRmsNorm, Activation::kSilu,
       /*gated_mlp=*/true, /*qkv_bias=*/true, /*uses_sliding_window=*/false, LlamaNames()},
  };
}

absl::Status Bad(const std::string& origin, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": ", what));
}

// Reads a positive integer field of at most `max` (ModelLimits); `fallback` when
// absent (nullopt = required). Bounded before anything is sized from it.
absl::StatusOr<int64_t> PositiveInt(const nlohmann::json& j, const char* key,
                                    const std::string& origin, int64_t max,
                                    std::optional<int64_t> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Bad(origin, absl::StrCat("missing \"", key, "\""));
  }
  if (!it->is_number_integer()) return Bad(origin, absl::StrCat("\"", key, "\" is not an integer"));
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max)) {
    return Bad(origin, absl::StrCat("\"", key, "\" = ", it->get<uint64_t>(),
                                    " is above qcal's limit of ", max));
  }
  const int64_t v = it->get<int64_t>();
  if (v <= 0) return Bad(origin, absl::StrCat("\"", key, "\" = ", v, " is not positive"));
  if (v > max) {
    return Bad(origin, absl::StrCat("\"", key, "\" = ", v, " is above qcal's limit of ", max));
  }
  return v;
}

std::optional<int64_t> OptionalTokenId(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  // Some configs list several eos ids; the first is the canonical one.
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    return (*it)[0].get<int64_t>();
  }
  return std::nullopt;
}

}  // namespace

const std::vector<ArchSpec>& ArchTable() {
  static const std::vector<ArchSpec>* table = new std::vector<ArchSpec>(BuildTable());
  return *table;
}

const ArchSpec& SpecOf(Arch arch) {
  for (const auto& s : ArchTable()) {
    if (s.arch == arch) return s;
  }
  return ArchTable().front();  // unreachable: every Arch has a row
}

std::string SupportedModelTypes() {
  std::vector<std::string> types;
  for (const auto& s : ArchTable()) types.push_back(s.model_type);
  return absl::StrJoin(types, ", ");
}

std::string ModelConfig::ModuleName(TensorRole role, int64_t layer) const {
  for (const auto& rn : spec().names) {
    if (rn.role == role) {
      return absl::StrReplaceAll(rn.pattern, {{"{i}", absl::StrCat(layer)}});
    }
  }
  return "";
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& origin) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(origin, "not valid JSON");
  if (!j.is_object()) return Bad(origin, "not a JSON object");

  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) return Bad(origin, "missing string \"model_type\"");
  c.model_type = mt->get<std::string>();
  const ArchSpec* spec = nullptr;
  for (const auto& s : ArchTable()) {
    if (c.model_type == s.model_type) spec = &s;
  }
  if (spec == nullptr) {
    return absl::UnimplementedError(absl::StrCat(origin, ": unsupported architecture \"",
                                                 c.model_type, "\" (supported: ",
                                                 SupportedModelTypes(), ")"));
  }
  c.arch = spec->arch;

  auto get = [&](const char* key, int64_t max, std::optional<int64_t> fallback = std::nullopt) {
    return PositiveInt(j, key, origin, max, fallback);
  };
  using L = ModelLimits;
  auto assign = [](int64_t& dst, absl::StatusOr<int64_t> v) -> absl::Status {
    if (!v.ok()) return v.status();
    dst = *v;
    return absl::OkStatus();
  };
  absl::Status st;
  if (!(st = assign(c.vocab_size, get("vocab_size", L::kVocab))).ok()) return st;
  if (!(st = assign(c.hidden_size, get("hidden_size", L::kHidden))).ok()) return st;
  if (!(st = assign(c.intermediate_size, get("intermediate_size", L::kIntermediate))).ok()) return st;
  if (!(st = assign(c.num_layers, get("num_hidden_layers", L::kLayers))).ok()) return st;
  if (!(st = assign(c.num_heads, get("num_attention_heads", L::kHeads))).ok()) return st;
  if (!(st = assign(c.num_kv_heads, get("num_key_value_heads", L::kHeads, c.num_heads))).ok()) return st;
  if (!(st = assign(c.max_position_embeddings, get("max_position_embeddings", L::kPositions, 2048))).ok()) return st;
  if (!(st = assign(c.head_dim, get("head_dim", L::kHeadDim, c.hidden_size / c.num_heads))).ok()) return st;
  if (c.hidden_size % c.num_heads != 0 && !j.contains("head_dim")) {
    return Bad(origin, absl::StrCat("hidden_size ", c.hidden_size,
                                    " is not divisible by num_attention_heads ", c.num_heads));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return Bad(origin, absl::StrCat("num_attention_heads ", c.num_heads,
                                    " is not a multiple of num_key_value_heads ", c.num_kv_heads));
  }
  if (c.head_dim % 2 != 0) return Bad(origin, "head_dim must be even for rotary embeddings");

  auto num = [&](const char* key, double fallback) -> absl::StatusOr<double> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number()) return Bad(origin, absl::StrCat("\"", key, "\" is not a number"));
    return it->get<double>();
  };
  auto eps = num("rms_norm_eps", 1e-6);
  if (!eps.ok()) return eps.status();
  c.norm_eps = *eps;
  auto theta = num("rope_theta", 10000.0);
  if (!theta.ok()) return theta.status();
  c.rope_theta = *theta;
  if (!(c.norm_eps > 0 && c.norm_eps < 1)) return Bad(origin, "rms_norm_eps out of range");
  if (!(c.rope_theta > 0)) return Bad(origin, "rope_theta must be positive");
  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    return absl::UnimplementedError(absl::StrCat(origin, ": rope_scaling is not supported yet"));
  }

  if (spec->uses_sliding_window) {
    auto sw = j.find("sliding_window");
    if (sw != j.end() && !sw->is_null()) {
      if (!sw->is_number_integer() || sw->get<int64_t>() <= 0) {
        return Bad(origin, "\"sliding_window\" must be a positive integer or null");
      }
      c.sliding_window = sw->get<int64_t>();
    }
  }
  auto tie = j.find("tie_word_embeddings");
  if (tie != j.end() && !tie->is_null()) {
    if (!tie->is_boolean()) return Bad(origin, "\"tie_word_embeddings\" is not a boolean");
    c.tie_word_embeddings = tie->get<bool>();
  }
  auto dt = j.find("torch_dtype");
  if (dt != j.end() && dt->is_string()) c.torch_dtype = dt->get<std::string>();
  c.bos_token_id = OptionalTokenId(j, "bos_token_id");
  c.eos_token_id = OptionalTokenId(j, "eos_token_id");
  c.pad_token_id = OptionalTokenId(j, "pad_token_id");
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxConfigBytes);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  if (!text.ok()) return text.status();
  return ParseModelConfig(*text, path);
}

std::vector<LinearModule> LinearModules(const ModelConfig& c) {
  std::vector<LinearModule> out;
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  const int64_t h = c.hidden_size;
  const int64_t f = c.intermediate_size;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto add = [&](TensorRole role, int64_t in, int64_t o) {
      out.push_back({c.ModuleName(role, i), role, i, in, o});
    };
    add(R::kQ, h, q_out);
    add(R::kK, h, kv_out);
    add(R::kV, h, kv_out);
    add(R::kO, q_out, h);
    if (c.spec().gated_mlp) add(R::kGate, h, f);
    add(R::kUp, h, f);
    add(R::kDown, f, h);
  }
  out.push_back({c.ModuleName(R::kLmHead), R::kLmHead, -1, h, c.vocab_size});
  return out;
}

}  // namespace qcal
