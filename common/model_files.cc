#include "common/model_files.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/regular_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal {

namespace {
// An index lists every tensor once; even a 1,000-layer model's is a few MB.
constexpr int64_t kMaxIndexBytes = 64 << 20;
}  // namespace

std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& c) {
  using R = TensorRole;
  const int64_t h = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  std::vector<ExpectedTensor> out;
  auto add = [&](R role, int64_t layer, const char* suffix, std::vector<int64_t> shape,
                 bool optional = false) {
    out.push_back({c.ModuleName(role, layer < 0 ? 0 : layer) + suffix, std::move(shape), role,
                   layer, optional});
  };
  add(R::kTokenEmbedding, -1, ".weight", {v, h});
  add(R::kFinalNorm, -1, ".weight", {h});
  add(R::kLmHead, -1, ".weight", {v, h}, /*optional=*/c.tie_word_embeddings);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    add(R::kAttnNorm, i, ".weight", {h});
    add(R::kMlpNorm, i, ".weight", {h});
    add(R::kQ, i, ".weight", {q, h});
    add(R::kK, i, ".weight", {kv, h});
    add(R::kV, i, ".weight", {kv, h});
    add(R::kO, i, ".weight", {h, q});
    if (c.spec().qkv_bias) {
      add(R::kQ, i, ".bias", {q});
      add(R::kK, i, ".bias", {kv});
      add(R::kV, i, ".bias", {kv});
    }
    if (c.spec().gated_mlp) add(R::kGate, i, ".weight", {f, h});
    add(R::kUp, i, ".weight", {f, h});
    add(R::kDown, i, ".weight", {h, f});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ModelFiles>> ModelFiles::Open(const std::string& dir,
                                                             const Admit& admit) {
  // Missing files are left to the readers, which name what is missing.
  const auto admitted = [&admit](const std::string& path) -> absl::Status {
    struct stat st;
    if (!admit || ::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
    return admit(path);
  };
  auto files = std::unique_ptr<ModelFiles>(new ModelFiles());
  files->dir_ = dir;
  const std::string index = dir + "/model.safetensors.index.json";
  QCAL_RETURN_IF_ERROR(admitted(index));
  absl::StatusOr<std::string> index_text = ReadRegularFile(index, kMaxIndexBytes);
  if (!index_text.ok() && !absl::IsNotFound(index_text.status())) return index_text.status();
  if (index_text.ok()) {
    files->where_ = index;
    files->sharded_ = true;
    nlohmann::json j = nlohmann::json::parse(*index_text, nullptr, false);
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
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index, ": shard name \"", file, "\" must be a plain file name"));
      }
      files->shard_of_[it.key()] = file;
      files->names_.push_back(it.key());
    }
    for (const auto& [name, file] : files->shard_of_) {
      if (files->files_.count(file)) continue;
      QCAL_RETURN_IF_ERROR(admitted(dir + "/" + file));
      QCAL_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + file));
      files->files_[file] = std::move(f);
    }
    return files;
  }
  const std::string single = dir + "/model.safetensors";
  files->where_ = single;
  QCAL_RETURN_IF_ERROR(admitted(single));
  QCAL_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
  for (const auto& name : f->names()) files->shard_of_[name] = "model.safetensors";
  files->names_ = f->names();
  files->files_["model.safetensors"] = std::move(f);
  return files;
}

std::vector<std::string> ModelFiles::paths() const {
  std::vector<std::string> out;
  if (sharded_) out.push_back(where_);
  for (const auto& [file, f] : files_) out.push_back(dir_ + "/" + file);
  return out;
}

absl::StatusOr<std::pair<const SafetensorsFile*, TensorView>> ModelFiles::Find(
    const std::string& tensor) const {
  auto it = shard_of_.find(tensor);
  if (it == shard_of_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor \"", tensor, "\" not found in ", where_));
  }
  const SafetensorsFile* file = files_.at(it->second).get();
  QCAL_ASSIGN_OR_RETURN(TensorView view, file->Get(tensor));
  return std::make_pair(file, view);
}

absl::StatusOr<std::pair<const SafetensorsFile*, TensorView>> ModelFiles::FindChecked(
    const ExpectedTensor& e) const {
  QCAL_ASSIGN_OR_RETURN(auto found, Find(e.name));
  const TensorView& view = found.second;
  if (view.shape != e.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", e.name, "\" in ", found.first->path(), " has shape [",
        absl::StrJoin(view.shape, ", "), "], config.json implies [", absl::StrJoin(e.shape, ", "),
        "]"));
  }
  if (view.dtype != DType::kF32 && view.dtype != DType::kF16 && view.dtype != DType::kBF16 &&
      view.dtype != DType::kF64) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", e.name, "\" in ",
                                                   found.first->path(), " has dtype ",
                                                   DTypeName(view.dtype),
                                                   "; weights must be F32, F16 or BF16"));
  }
  return found;
}

absl::Status CheckModelFiles(const ModelFiles& files, const ModelConfig& config) {
  for (const ExpectedTensor& e : ExpectedTensors(config)) {
    if (e.optional && !files.Has(e.name)) continue;
    QCAL_RETURN_IF_ERROR(files.FindChecked(e).status());
  }
  return absl::OkStatus();
}

absl::Status CheckModelFiles(const std::string& dir, const ModelConfig& config) {
  QCAL_ASSIGN_OR_RETURN(auto files, ModelFiles::Open(dir));
  return CheckModelFiles(*files, config);
}

const std::vector<std::string>& TokenizerFiles() {
  static const auto* files = new std::vector<std::string>{
      "tokenizer.json",          "tokenizer.model",        "tokenizer_config.json",
      "special_tokens_map.json", "generation_config.json"};
  return *files;
}

}  // namespace qcal
