// Exports of a calibrated model: the int8 shadow model (mllm's layout or plain
// safetensors), a W8A8 compressed-tensors checkpoint that vLLM loads, and the
// statistics files; with optional SmoothQuant / logarithmic-equalization smoothing.
// Semantics: DESIGN.md "Smoothing" and "Export"; mllm's export_int8_model.py;
// SmoothQuant's smooth.py; compressed-tensors' QuantizationConfig / calculate_qparams.
//
// Everything here works on float32 copies of the weights read through ModelFiles, one
// tensor at a time (no libtorch): the coordinator never calls it, workers do.
//
// Crash safety: WriteExport writes into a fresh sibling folder "<out>.partial-<tag>"
// and renames it to <out> only when every file is written and flushed, so a crash
// never leaves a folder under the final name; a leftover partial folder is removed by
// the next attempt at the same <out> (so one export per <out> at a time). The tag is
// "<pid>-<random>"; every file and folder is fsynced before the rename, which never
// replaces an existing <out> (renameat2 RENAME_NOREPLACE).
//
// Thread-safety: pure functions; no shared state.
#ifndef QCAL_COMMON_EXPORT_EXPORT_H_
#define QCAL_COMMON_EXPORT_EXPORT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"

namespace qcal::exporter {

enum class Format { kMllm, kSafetensors, kCompressedTensors, kStats };
// "mllm", "safetensors", "compressed-tensors", "stats".
absl::StatusOr<Format> ParseFormat(const std::string& s);
const char* FormatName(Format f);

enum class SmoothingMethod { kNone, kSmoothQuant, kLogEq };

struct Smoothing {
  SmoothingMethod method = SmoothingMethod::kNone;
  double alpha = 0.5;  // SmoothQuant migration strength, in [0, 1]
  // true: folded into the weights (the source norm / linear divided by s, the reading
  // linears multiplied by s). false: the reading linears' weights are multiplied by s
  // and each carries "<linear>.migration_scale" = s (F32 [in_features]); a runtime
  // divides that linear's input by it (lmdeploy-style); sources are untouched.
  bool fuse = false;
};
// "none", "smoothquant" (alpha 0.5), "smoothquant:<alpha>", "logeq".
// INVALID_ARGUMENT naming the text otherwise (alpha outside [0, 1] included).
absl::StatusOr<Smoothing> ParseSmoothing(const std::string& s);
std::string SmoothingName(const Smoothing& s);  // inverse of ParseSmoothing

// ---- smoothing ----

// A smoothing group: one activation (the output of `source`, a norm or a linear),
// the linears that read it, and every reader of that activation in the architecture.
struct SmoothGroup {
  std::string source;             // module name, e.g. "model.layers.0.input_layernorm"
  bool source_is_norm = true;     // norm (weight [C]) or linear (weight [C, in], bias [C])
  std::vector<std::string> linears;  // modules whose input is the activation (smoothed)
  std::vector<std::string> readers;  // every consumer of the activation
  int64_t channels = 0;           // C
};

// The groups of `config`'s architecture in forward order: per layer
// input_layernorm -> q, k, v; v_proj -> o_proj (only when num_kv_heads == num_heads:
// with grouped-query attention one v channel feeds several o_proj channels);
// post_attention_layernorm -> gate, up; up_proj -> down_proj (gated MLPs only).
std::vector<SmoothGroup> SmoothGroups(const ModelConfig& config);

// True when every reader of the group's activation is one of its linears (the
// MoE-router pitfall: never scale an activation a non-compensated module reads).
bool SmoothableGroup(const SmoothGroup& g);

// SmoothQuant (smooth.py, smooth_ln_fcs): w_j = max(max over the group's concatenated
// weight rows of |W[:, j]|, 1e-5); s_j = max(act_j^alpha / w_j^(1 - alpha), 1e-5).
// Computed in float32 as smooth.py does on float32 weights. INVALID_ARGUMENT for
// mismatched sizes or alpha outside [0, 1].
absl::StatusOr<std::vector<float>> SmoothQuantScales(const std::vector<float>& act_absmax,
                                                     const std::vector<float>& weight_absmax,
                                                     double alpha);
// Logarithmic equalization (llm-compressor's LogarithmicEqualizationModifier):
// s_j = act_j / log2(2 + act_j), clamped below at 1e-5 (a channel that never fired
// would otherwise give s = 0).
std::vector<float> LogEqScales(const std::vector<float>& act_absmax);

// Per-channel absmax of a statistics side: max(|min_c|, |max_c|).
std::vector<float> ChannelAbsmax(const stats::TensorStats& t);

// The scales of one applied group.
struct GroupScales {
  SmoothGroup group;
  std::vector<float> scales;  // [channels]
};
// What smoothing decided for a model: the groups applied (with scales) and those
// skipped with the reason.
struct SmoothingPlan {
  Smoothing smoothing;
  std::vector<GroupScales> applied;
  std::vector<std::pair<std::string, std::string>> skipped;  // (source, why)
};

// Loads the weights it needs from `model_dir` (each group's linears, original
// weights) and computes every smoothable group's scales from `set` (the input
// statistics of the group's first linear; all of them read the same tensor).
// Groups whose linears have no statistics or whose readers are not all in the group
// are skipped with a reason. kNone gives an empty plan.
absl::StatusOr<SmoothingPlan> PlanSmoothing(const ModelConfig& config,
                                            const std::string& model_dir,
                                            const stats::StatsSet& set,
                                            const Smoothing& smoothing);

// Per-channel statistics after smoothing, derived without a forward pass: for every
// linear reading a smoothed activation its input per channel divided by s; for every
// source linear its output per channel divided by s (as fused smoothing makes them).
// Returns a copy of `set` in which the affected TensorStats have per-channel min / s,
// max / s, sum / s and sumsq / s^2 (exact up to rounding) and the same counts. Their
// sketches cannot be derived (a per-tensor quantile of x / s needs the per-channel
// distribution); each is replaced by a bound that keeps TensorStats' invariants: per
// channel one value at min / s, one at max / s, the other count - 2 at whichever has
// the larger magnitude, so every |x| quantile is >= the true one (up to the bucket
// error) and ori is exact. Use the per-channel arrays and AbsMax(), not top_0_1.
// INVALID_ARGUMENT for channel counts that differ from the scales; NOT_FOUND for a
// smoothed linear without statistics.
absl::StatusOr<stats::StatsSet> DeriveSmoothedStats(const stats::StatsSet& set,
                                                    const SmoothingPlan& plan);

// Writes the float model with the plan fused (whatever plan.smoothing.fuse says) as
// float32 "model.safetensors" plus copies of config.json and the tokenizer files into
// `out_dir`, crash-safe like WriteExport (ALREADY_EXISTS when it exists). Used to
// check that the fused model computes the same function.
absl::Status WriteFusedFloatModel(const std::string& model_dir, const SmoothingPlan& plan,
                                  const std::string& out_dir);

// ---- int8 ----

// mllm's quantize_weight_per_tensor_absmax: scale = max(absmax, 1e-5) / 127 in
// float32; q = round-half-even(w / scale) as int8.
struct QuantizedTensor {
  std::vector<int8_t> q;
  std::vector<float> scales;  // 1 (per tensor) or rows (per channel)
};
QuantizedTensor QuantizePerTensorMllm(const std::vector<float>& w);
// The same formula per output row (w is [rows, cols] row-major).
QuantizedTensor QuantizePerChannelMllm(const std::vector<float>& w, int64_t rows, int64_t cols);
// compressed-tensors' symmetric int8 (calculate_qparams): scale = max(absmax / 127.5,
// float32 eps) per row; q = clamp(round-half-even(w / scale), -128, 127).
QuantizedTensor QuantizePerChannelCompressed(const std::vector<float>& w, int64_t rows,
                                             int64_t cols);
// compressed-tensors' per-tensor activation scale for an absmax.
float CompressedTensorsScale(float absmax);

// ---- exports ----

struct ExportInputs {
  std::string model_dir;  // Hugging Face folder (config.json, safetensors, tokenizer)
  ModelConfig config;
  stats::StatsSet stats;  // the job's merged statistics
  stats::Mode mode = stats::Mode::kAbs;
  double threshold = 0;   // mllm's t01m_clip_threshold
  Format format = Format::kMllm;
  Smoothing smoothing;    // kMllm and kStats refuse anything but kNone
  bool per_channel_weights = false;  // kSafetensors only
  // kSafetensors and kCompressedTensors: a checkpoint larger than this is written as
  // Hugging Face shards with an index (transformers' default limit, 5 GB), which also
  // bounds the export's memory to about one shard. <= 0: one file. kMllm is always
  // one file (mllm's converter takes one).
  int64_t max_shard_bytes = 5'000'000'000;
  // mllm's model_res_acc.json content, written by kStats when set (from the job's
  // newest evaluation).
  std::optional<std::string> model_res_acc_json;
  // A JSON object (job spec, model and corpus hashes, qcal version, operation) that
  // every export writes as provenance.json; the export adds the statistic mode, the
  // formula variants, the threshold and the smoothing to it.
  std::string provenance_json = "{}";
  // Called with the partial folder after every file is written, before the rename
  // (tests use it to stop a worker in the middle of an export). May be empty.
  std::function<void(const std::string& partial_dir)> before_rename;
};

// What each format writes (every one also writes provenance.json: the caller's
// provenance object plus "statistic_mode", "threshold", "smoothing" (name, alpha,
// fused, formula, groups applied / skipped with the reason), "format" and
// "formula_variants" (the weight formula, clip rule and activation-scale rule used)):
//
// kMllm: "model-int8.safetensors" (mllm's export_int8_model.py): every tensor of the
//   model as float32 (a tied model also gets lm_head.weight, the embedding), except,
//   for every linear but lm_head, "<m>.weight" int8 per tensor (QuantizePerTensorMllm)
//   transposed to [in_features, out_features] with "<m>.weight.scale" F32 [], and a
//   bias as "<m>.bias" int8 per tensor (not transposed) with "<m>.bias.scale" F32 [];
//   for every linear (lm_head included, its weight stays float) "<m>.input_scale",
//   "<m>.output_scale" F32 [] (the clip decision's scale: ori when clipped, else
//   top_0_1, raw values not divided by 127) and "<m>.clip_input", "<m>.clip_output"
//   BOOL []. "quant_config.json": threshold, mode, shadow layers (a list and mllm's
//   "{1, 2}" string), mllm's clip counts and no_clip_*_name lists, the not-clipped
//   linears, outlier channels per not-clipped tensor, the quantized linears and every
//   linear's decision. Copies of config.json and the tokenizer files.
// kSafetensors: the same files, weights [out_features, in_features] (not transposed),
//   per tensor (scale []) or per_channel_weights (scale [out], the same formula per
//   row), smoothing allowed. A linear whose input was smoothed gets clip_input = true
//   and input_scale = the derived absmax max_j(absmax_j / s_j): the statistics'
//   top_0_1 was taken on x, not on x / s. Fused smoothing does the same for a source
//   linear's output. Unfused smoothing adds "<m>.migration_scale" F32 [in_features]
//   to every smoothed linear (its weight columns are multiplied by s).
// kCompressedTensors: "model.safetensors" with, for every quantized linear,
//   "<m>.weight" int8 [out, in] (QuantizePerChannelCompressed), "<m>.weight_scale" F32
//   [out, 1] and "<m>.input_scale" F32 [1] = CompressedTensorsScale(the input's exact
//   per-tensor absmax, after smoothing the derived one). lm_head and the down_proj of
//   every shadow layer stay float; untouched tensors keep their bytes and dtype,
//   tensors changed by smoothing are float32. config.json gains compressed-tensors'
//   "quantization_config" (static symmetric int8: weights per channel, inputs per
//   tensor; "ignore" lists the float linears). Only fused smoothing (vLLM has no
//   migration_scale). Tokenizer files copied.
// kStats: stats::WriteCalibrationOutputs' three files and model_res_acc.json when set.
//
// Shadow layers, counts and outlier channels follow the decisions after smoothing's
// replacements (without smoothing: exactly quant::AnalyzeThresholds' at the threshold).
// The output is assembled in memory (one safetensors file, no sharding).

// What an export wrote.
struct ExportSummary {
  std::string out_dir;
  std::vector<std::string> files;  // relative to out_dir, sorted
  int64_t bytes = 0;
  std::vector<int64_t> shadow_layers;
  int64_t quantized_linears = 0;
  int64_t smoothed_groups = 0;
};

// Regular files under an export folder `dir`, relative, sorted (what
// ExportSummary::files lists); *bytes gets their total size.
absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir, int64_t* bytes);

// INVALID_ARGUMENT for inconsistent inputs (a smoothing with kMllm / kStats, per-channel
// weights outside kSafetensors, a bad threshold, statistics that do not match the
// model), ALREADY_EXISTS when `out_dir` exists, errors naming the file otherwise.
absl::StatusOr<ExportSummary> WriteExport(const ExportInputs& in, const std::string& out_dir);

}  // namespace qcal::exporter

#endif  // QCAL_COMMON_EXPORT_EXPORT_H_
