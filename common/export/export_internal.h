// Internal to qcal_export: the pieces WriteExport assembles. Not a public header.
#ifndef QCAL_COMMON_EXPORT_EXPORT_INTERNAL_H_
#define QCAL_COMMON_EXPORT_EXPORT_INTERNAL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/export/export.h"
#include "common/model_files.h"
#include "common/quant/clip.h"
#include "common/quant/shadow.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"

namespace qcal::exporter::internal {

// ---- files (files.cc) ----

// Writes `content` to `path` and fsyncs it. Errors name the file.
absl::Status WriteFileSynced(const std::string& path, const std::string& content);
// Copies `src` to `dst` (fsynced).
absl::Status CopyFileSynced(const std::string& src, const std::string& dst);
// fsyncs every regular file under `dir` and every directory (dir included).
absl::Status SyncTree(const std::string& dir);
// Copies those of TokenizerFiles() (common/model_files.h) that `model_dir` holds into `out_dir`.
absl::Status CopyTokenizerFiles(const std::string& model_dir, const std::string& out_dir);
// The whole file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// ---- weights (weights.cc) ----

// The tensors of a model folder read as float32 with a smoothing plan applied: fused,
// a source norm's weight / s, a source linear's rows (and bias) / s and the reading
// linears' columns * s; unfused, only the reading linears' columns * s. Every group
// multiplies or divides the ORIGINAL tensor (the plan's scales come from the
// original weights), so a tensor touched by two groups (up_proj: read by
// post_attention_layernorm's group, source of up_proj -> down_proj) gets both.
class WeightReader {
 public:
  // `plan` may be null (no smoothing); it must outlive the reader.
  static absl::StatusOr<std::unique_ptr<WeightReader>> Open(const std::string& model_dir,
                                                            const SmoothingPlan* plan);
  // Every tensor of the model files, in file order (the index's order when sharded).
  const std::vector<std::string>& names() const { return files_->names(); }
  absl::StatusOr<TensorView> Raw(const std::string& name) const;
  // True when smoothing changes `name`.
  bool Changed(const std::string& name) const { return ops_.count(name) != 0; }
  // float32 copy with the smoothing applied.
  absl::StatusOr<std::vector<float>> Read(const std::string& name,
                                          std::vector<int64_t>* shape) const;

 private:
  enum class OpKind { kDivide, kDivideRows, kMultiplyColumns };
  struct Op {
    OpKind kind;
    const std::vector<float>* scales;
  };
  std::unique_ptr<ModelFiles> files_;
  std::map<std::string, std::vector<Op>> ops_;
};

// ---- clip decisions (decisions.cc) ----

// What the int8 exports decide at the threshold, after smoothing.
struct Decisions {
  quant::ClipResult clips;  // one entry per linear, forward order, lm_head last
  std::vector<int64_t> shadow_layers;
  std::vector<std::string> not_clipped_linears;
  std::vector<quant::OutlierChannels> outliers;
  // Per-tensor absmax of every linear's input in abs terms, after smoothing (what
  // compressed-tensors' minmax observer would see).
  std::map<std::string, float> input_absmax;
  // The linears whose input (or, fused, output) was smoothed: their clip flag is
  // forced true with the derived absmax as scale.
  std::vector<std::string> smoothed_inputs;
  std::vector<std::string> smoothed_outputs;
};

// INVALID_ARGUMENT when `set` does not match the model: a linear that is not a
// module, channels that differ from the module's, or a module without rows.
absl::Status CheckStatsMatchModel(const stats::StatsSet& set, const ModelConfig& config);

// Clip decisions of quant::DecideClips at `threshold` in `mode`, with every smoothed
// side replaced by (clipped, derived absmax max_j(absmax_j / s_j)): the statistics'
// per-tensor top_0_1 was taken before smoothing and says nothing about x / s. The
// counts, not-clipped names, shadow layers and outlier channels follow from the
// replaced decisions. `fused` decides whether source linears' outputs change.
absl::StatusOr<Decisions> Decide(const stats::StatsSet& set, const ModelConfig& config,
                                 stats::Mode mode, double threshold,
                                 const SmoothingPlan& plan);

// ---- tensor sink (tensor_sink.cc) ----

// Collects the tensors of one checkpoint in order and writes them as
// "<base>.safetensors", or, once they exceed max_shard_bytes, as Hugging Face shards
// "<base>-0000i-of-0000N.safetensors" plus "<base>.safetensors.index.json" (what
// transformers and vLLM load), so an export holds at most one shard in memory.
// max_shard_bytes <= 0: one file whatever the size.
class TensorSink {
 public:
  TensorSink(std::string dir, std::string base, int64_t max_shard_bytes);
  absl::Status Add(TensorToWrite t);
  // Writes what is left; returns the files written (relative to dir).
  absl::StatusOr<std::vector<std::string>> Finish();

 private:
  absl::Status Flush();
  std::string ShardTemp(size_t i) const;
  std::string dir_, base_;
  int64_t max_shard_bytes_;
  std::vector<TensorToWrite> pending_;
  int64_t pending_bytes_ = 0;
  int64_t total_bytes_ = 0;
  std::vector<std::vector<std::string>> shards_;  // tensor names of each written shard
};

// ---- writers ----

// What a writer reports back to WriteExport.
struct WriterResult {
  int64_t quantized_linears = 0;
  nlohmann::json formula_variants = nlohmann::json::object();
};

// mllm / safetensors int8 shadow model (int8_writer.cc).
absl::StatusOr<WriterResult> WriteInt8Model(const ExportInputs& in, const SmoothingPlan& plan,
                                            const Decisions& d, const std::string& dir);
// compressed-tensors W8A8 checkpoint (compressed_writer.cc).
absl::StatusOr<WriterResult> WriteCompressedTensors(const ExportInputs& in,
                                                    const SmoothingPlan& plan,
                                                    const Decisions& d, const std::string& dir);

// The name of the JSON the int8 shadow model carries its decisions in.
inline constexpr char kQuantConfigFile[] = "quant_config.json";
inline constexpr char kInt8ModelBase[] = "model-int8";  // + ".safetensors" or shards
inline constexpr char kMllmModelFile[] = "model-int8.safetensors";
inline constexpr char kProvenanceFile[] = "provenance.json";

// An F32 tensor of shape [] (mllm's 0-d scales) / BOOL [].
TensorToWrite ScalarF32(std::string name, float v);
TensorToWrite ScalarBool(std::string name, bool v);
TensorToWrite Int8Tensor(std::string name, std::vector<int64_t> shape,
                         const std::vector<int8_t>& q);

}  // namespace qcal::exporter::internal

#endif  // QCAL_COMMON_EXPORT_EXPORT_INTERNAL_H_
