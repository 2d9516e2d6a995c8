// The shadow layers of a job at one threshold, as `qcal shadow-layers` prints them:
// taken from an evaluation, or decided here from the job's statistics.
//
// Deciding here needs each down projection's decoder-layer index. With the model's
// config.json readable on this machine quant::ShadowLayers maps names through
// LinearModules(config); otherwise the index is read from the module name with the
// architecture table's down-projection pattern (ShadowLayersByName).
#ifndef QCAL_CLIENT_SHADOW_LAYERS_H_
#define QCAL_CLIENT_SHADOW_LAYERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/quant/clip.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"
#include "proto/qcal/v1/evaluation.pb.h"

namespace qcal::client {

// The index that `pattern` (an architecture table pattern such as
// "model.layers.{i}.mlp.down_proj") gives `name`: the decimal number in place of
// "{i}" when substituting it back reproduces `name` exactly (no sign, no leading
// zero, no overflow); nullopt otherwise or when the pattern has no "{i}".
std::optional<int64_t> LayerFromPattern(absl::string_view name, absl::string_view pattern);

// The decoder layer of `name` if it is the MLP down projection (TensorRole::kDown) of
// architecture `model_type` (config.json model_type, e.g. "llama"); with a
// `model_type` the table does not know (or empty), the down-projection pattern of
// any architecture is accepted. nullopt for every other module.
std::optional<int64_t> DownProjectionLayer(absl::string_view name,
                                           absl::string_view model_type);

// quant::ShadowLayers without a ModelConfig: the ascending, distinct layers of the
// down projections in `clips` that are not clipped on their input or output.
std::vector<int64_t> ShadowLayersByName(const quant::ClipResult& clips,
                                        absl::string_view model_type);

// "abs" / "mllm" -> the mode; a usage error naming `flag` otherwise.
absl::StatusOr<stats::Mode> ParseEvalMode(absl::string_view name, absl::string_view flag);

// What `shadow-layers` prints.
struct ShadowSelection {
  std::string job_id;
  double threshold = 0;
  std::string mode;          // "abs" / "mllm"
  bool recommended = false;  // the evaluation's recommended threshold
  std::vector<int64_t> layers;
  std::vector<std::string> no_clip_input_name;
  std::vector<std::string> no_clip_output_name;
  // "evaluation operations/<id>" or "statistics".
  std::string source;
  // Where the layer indices come from when computed here: "config" or
  // "module names" (and why); empty for an evaluation.
  std::string layer_index_from;
  std::string note;  // why the indices come from the names; may be empty
};

// The selection from one threshold's result of an evaluation.
ShadowSelection SelectionFromEvaluation(const std::string& job_id,
                                        const std::string& operation,
                                        const v1::EvaluateResponse& response,
                                        const v1::ThresholdResult& result,
                                        bool recommended);

// The selection decided here: quant::DecideClips(set, threshold, mode), then the
// layers through `config_dir`/config.json when it is readable (quant::ShadowLayers;
// its INVALID_ARGUMENT when a linear is not a module of that model), else by name
// for `model_type`. INVALID_ARGUMENT for a bad threshold.
absl::StatusOr<ShadowSelection> SelectionFromStatistics(const std::string& job_id,
                                                        const stats::StatsSet& set,
                                                        double threshold, stats::Mode mode,
                                                        const std::string& config_dir,
                                                        const std::string& model_type);

// The text output, ending with a newline. The first line is exactly the set as a
// runtime pastes it ("{1, 2, 26}"); then the threshold, mode and source; then the
// not-clipped linears of each side, one per line.
std::string FormatShadowSelection(const ShadowSelection& selection);

// One JSON line: {"job_id", "threshold", "mode", "recommended", "shadow_layers",
// "shadow_layers_set", "no_clip_input_name", "no_clip_output_name", "source",
// "layer_index_from"}.
std::string ShadowSelectionJson(const ShadowSelection& selection);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_SHADOW_LAYERS_H_
