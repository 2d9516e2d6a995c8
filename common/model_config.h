// Hugging Face model folders: config.json parsing and the architecture table.
//
// Architectures are data (STYLE.md, after llama.cpp): one ArchSpec per architecture
// holds its Hugging Face names, the weight-name pattern of every tensor role and its
// traits (norm kind, activation, gated MLP, biases, sliding window, tied embeddings).
// Forward code is assembled from shared blocks driven by this table; adding an
// architecture means adding a table row (and a block only where it is truly new).
//
// This header has no libtorch dependency: the coordinator uses it to validate jobs
// (config readable, architecture supported) and to know every linear module's name
// and width without loading weights.
#ifndef QCAL_COMMON_MODEL_CONFIG_H_
#define QCAL_COMMON_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qcal {

enum class Arch { kLlama, kMistral, kQwen2 };

enum class NormKind {
  kRmsNorm,  // x * rsqrt(mean(x^2) + eps) * w
};

enum class Activation { kSilu };

// What a weight tensor is, independent of the architecture's naming.
enum class TensorRole {
  kTokenEmbedding,
  kFinalNorm,
  kLmHead,
  kAttnNorm,  // per layer
  kMlpNorm,
  kQ,
  kK,
  kV,
  kO,
  kGate,
  kUp,
  kDown,
};

struct ArchSpec {
  Arch arch;
  const char* model_type;  // config.json "model_type"
  const char* hf_class;    // config.json "architectures"[0]
  NormKind norm;
  Activation activation;
  bool gated_mlp;        // down(act(gate(x)) * up(x)) rather than down(act(up(x)))
  bool qkv_bias;         // q/k/v projections carry a bias (qwen2)
  bool uses_sliding_window;  // honours config "sliding_window" (mistral)
  // Module-name pattern per role ("{i}" = layer index). Linear roles name the module
  // (the weight is "<module>.weight", a bias "<module>.bias"); norms and embeddings name
  // the module too.
  struct RoleName {
    TensorRole role;
    const char* pattern;
  };
  std::vector<RoleName> names;
};

// All supported architectures.
const std::vector<ArchSpec>& ArchTable();
// The row for `arch`.
const ArchSpec& SpecOf(Arch arch);
// Comma-separated model_type list, for error messages.
std::string SupportedModelTypes();

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // Keys j visible from query i satisfy i - sliding_window <= j <= i (HF eager
  // semantics); 0 means no window.
  int64_t sliding_window = 0;
  bool tie_word_embeddings = false;
  std::string torch_dtype;  // informational; weights are computed in float32
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;

  const ArchSpec& spec() const { return SpecOf(arch); }
  // Module name of `role` in layer `layer` (ignored for global roles).
  std::string ModuleName(TensorRole role, int64_t layer = 0) const;
};

// The largest config.json values qcal accepts, checked before anything is sized
// from them (a config claiming 2^40 layers must not cost gigabytes to refuse). Each
// is well above every released model: vocabularies reach 256 k, hidden sizes 16 k,
// layers 128, heads 128.
struct ModelLimits {
  static constexpr int64_t kVocab = int64_t{1} << 22;         // 4,194,304
  static constexpr int64_t kHidden = int64_t{1} << 16;        // 65,536
  static constexpr int64_t kIntermediate = int64_t{1} << 20;  // 1,048,576
  static constexpr int64_t kLayers = 1024;
  static constexpr int64_t kHeads = 1024;
  static constexpr int64_t kHeadDim = 1024;
  static constexpr int64_t kPositions = int64_t{1} << 24;     // 16,777,216
};

// Parses config.json text. `origin` names the file in errors. INVALID_ARGUMENT for
// malformed JSON, missing fields or fields out of range (ModelLimits: the message
// names the limit); UNIMPLEMENTED for an unsupported
// architecture (naming it and the supported ones).
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& origin);
// Reads <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// One linear module of the model, as Hugging Face's named_modules() names it.
struct LinearModule {
  std::string name;  // e.g. "model.layers.3.mlp.down_proj", "lm_head"
  TensorRole role;
  int64_t layer;  // -1 for lm_head
  int64_t in_features;
  int64_t out_features;
};

// Every linear module in forward-execution order (the order hooks fire, which is the
// order mllm's JSON files use).
std::vector<LinearModule> LinearModules(const ModelConfig& config);

}  // namespace qcal

#endif  // QCAL_COMMON_MODEL_CONFIG_H_
