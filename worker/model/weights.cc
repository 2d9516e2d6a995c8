#include "worker/model/weights.h"

#include <fstream>
#include <memory>
#include <sstream>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal {
namespace {

// Resolves tensor names to the (validated, mapped) file holding them.
class WeightSource {
 public:
  static absl::StatusOr<WeightSource> Open(const std::string& dir) {
    WeightSource src;
    const std::string single = dir + "/model.safetensors";
    const std::string index = dir + "/model.safetensors.index.json";
    std::ifstream idx(index);
    if (idx) {
      src.index_path_ = index;
      std::stringstream ss;
      ss << idx.rdbuf();
      nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
          !j["weight_map"].is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(index, ": no \"weight_map\" object"));
      }
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(index, ": weight_map entry \"", it.key(), "\" is not a file name"));
        }
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos || file.find("..") != std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat(index, ": shard name \"", file, "\" must be a plain file name"));
        }
        src.shard_of_[it.key()] = file;
      }
      for (const auto& [name, file] : src.shard_of_) {
        if (src.files_.count(file)) continue;
        QCAL_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + file));
        src.files_[file] = std::move(f);
      }
      return src;
    }
    QCAL_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
    for (const auto& name : f->names()) src.shard_of_[name] = "model.safetensors";
    src.files_["model.safetensors"] = std::move(f);
    return src;
  }

  bool Has(const std::string& name) const { return shard_of_.count(name) != 0; }

  absl::StatusOr<at::Tensor> Load(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = shard_of_.find(name);
    if (it == shard_of_.end()) {
      const std::string where = index_path_.empty() ? files_.begin()->second->path() : index_path_;
      return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" not found in ", where));
    }
    const SafetensorsFile& file = *files_.at(it->second);
    QCAL_ASSIGN_OR_RETURN(TensorView view, file.Get(name));
    if (view.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" in ", file.path(), " has shape [", absl::StrJoin(view.shape, ", "),
          "], config.json implies [", absl::StrJoin(shape, ", "), "]"));
    }
    at::ScalarType type;
    switch (view.dtype) {
      case DType::kF32: type = at::kFloat; break;
      case DType::kF16: type = at::kHalf; break;
      case DType::kBF16: type = at::kBFloat16; break;
      case DType::kF64: type = at::kDouble; break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", file.path(),
                                                       " has dtype ", DTypeName(view.dtype),
                                                       "; weights must be F32, F16 or BF16"));
    }
    // The mapping is read-only and outlives this call; copy (and widen) it out.
    at::Tensor mapped = at::from_blob(const_cast<uint8_t*>(view.data), shape,
                                      at::TensorOptions().dtype(type));
    return mapped.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  }

 private:
  std::string index_path_;
  std::map<std::string, std::string> shard_of_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
};

}  // namespace

absl::StatusOr<ModelWeights> LoadWeights(const std::string& dir, const ModelConfig& c) {
  QCAL_ASSIGN_OR_RETURN(WeightSource src, WeightSource::Open(dir));
  const ArchSpec& spec = c.spec();
  const int64_t h = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  const int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  ModelWeights w;
  auto load = [&](TensorRole role, int64_t layer, const char* suffix,
                  std::vector<int64_t> shape, at::Tensor* out) -> absl::Status {
    QCAL_ASSIGN_OR_RETURN(*out, src.Load(c.ModuleName(role, layer) + suffix, shape));
    return absl::OkStatus();
  };
  QCAL_RETURN_IF_ERROR(load(TensorRole::kTokenEmbedding, 0, ".weight", {v, h}, &w.embed));
  QCAL_RETURN_IF_ERROR(load(TensorRole::kFinalNorm, 0, ".weight", {h}, &w.final_norm));
  const std::string head = c.ModuleName(TensorRole::kLmHead) + ".weight";
  if (c.tie_word_embeddings && !src.Has(head)) {
    w.lm_head = w.embed;
  } else {
    QCAL_RETURN_IF_ERROR(load(TensorRole::kLmHead, 0, ".weight", {v, h}, &w.lm_head));
  }
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights l;
    QCAL_RETURN_IF_ERROR(load(TensorRole::kAttnNorm, i, ".weight", {h}, &l.attn_norm));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kMlpNorm, i, ".weight", {h}, &l.mlp_norm));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kQ, i, ".weight", {q_out, h}, &l.q));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kK, i, ".weight", {kv_out, h}, &l.k));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kV, i, ".weight", {kv_out, h}, &l.v));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kO, i, ".weight", {h, q_out}, &l.o));
    if (spec.qkv_bias) {
      QCAL_RETURN_IF_ERROR(load(TensorRole::kQ, i, ".bias", {q_out}, &l.q_bias));
      QCAL_RETURN_IF_ERROR(load(TensorRole::kK, i, ".bias", {kv_out}, &l.k_bias));
      QCAL_RETURN_IF_ERROR(load(TensorRole::kV, i, ".bias", {kv_out}, &l.v_bias));
    }
    if (spec.gated_mlp) {
      QCAL_RETURN_IF_ERROR(load(TensorRole::kGate, i, ".weight", {f, h}, &l.gate));
    }
    QCAL_RETURN_IF_ERROR(load(TensorRole::kUp, i, ".weight", {f, h}, &l.up));
    QCAL_RETURN_IF_ERROR(load(TensorRole::kDown, i, ".weight", {h, f}, &l.down));
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace qcal
