// The tensors a model folder must hold, derived from config.json and the
// architecture table, and a cheap check of a folder against them (headers only, no
// weights read): used by the coordinator at submit time and by the worker's loader,
// so both agree on what a valid model is.
#ifndef QCAL_COMMON_MODEL_FILES_H_
#define QCAL_COMMON_MODEL_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include <functional>
#include <map>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace qcal {

struct ExpectedTensor {
  std::string name;  // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  TensorRole role;
  int64_t layer;     // -1 for global tensors
  bool optional;     // lm_head.weight of a tied model
};

// Every tensor `config` needs, in a stable order.
std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& config);

// The safetensors files of a model folder: model.safetensors, or
// model.safetensors.index.json and every shard it names (plain file names only), all
// opened through the validating reader. Immutable; thread-safe for reading.
class ModelFiles {
 public:
  // Called with each file's path before it is opened (the index, then every shard,
  // or the single file), for those that exist; an error stops Open with it. The
  // coordinator passes its data-root check, so nothing outside the roots is read.
  using Admit = std::function<absl::Status(const std::string& path)>;
  static absl::StatusOr<std::unique_ptr<ModelFiles>> Open(const std::string& dir,
                                                          const Admit& admit = nullptr);
  bool Has(const std::string& tensor) const { return shard_of_.count(tensor) != 0; }
  // Every tensor: in header order for one file, in the index's (sorted) order when
  // sharded.
  const std::vector<std::string>& names() const { return names_; }
  // The files behind the weights: the single file, or the index then every shard
  // (sorted), as paths under the folder.
  std::vector<std::string> paths() const;
  // The file holding `tensor` and its view. NOT_FOUND names the index or file.
  absl::StatusOr<std::pair<const SafetensorsFile*, TensorView>> Find(
      const std::string& tensor) const;
  // Find plus a shape check against `shape` and a floating dtype.
  absl::StatusOr<std::pair<const SafetensorsFile*, TensorView>> FindChecked(
      const ExpectedTensor& expected) const;

 private:
  std::string dir_;
  std::string where_;  // the index file, or the single file, for errors
  bool sharded_ = false;  // an index and its shards
  std::vector<std::string> names_;
  std::map<std::string, std::string> shard_of_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
};

// Opens model.safetensors (or the index and every shard it names) through the
// validating reader and checks that every expected tensor is present with its shape
// and a floating dtype. Errors name the file and the tensor (NOT_FOUND for missing
// files or tensors, INVALID_ARGUMENT for corrupt files or misshaped tensors).
absl::Status CheckModelFiles(const std::string& dir, const ModelConfig& config);
// The same check of files already open.
absl::Status CheckModelFiles(const ModelFiles& files, const ModelConfig& config);

// The tokenizer and generation files a model folder may hold besides config.json
// and the weights: what the worker reads and what exports copy.
const std::vector<std::string>& TokenizerFiles();

}  // namespace qcal

#endif  // QCAL_COMMON_MODEL_FILES_H_
