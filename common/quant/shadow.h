// What a shadow runtime needs from clip decisions (clip.h): the shadow layers, the
// not-clipped linears and the outlier channels of every not-clipped tensor.
//
// No libtorch. Thread-safe (pure functions).
#ifndef QCAL_COMMON_QUANT_SHADOW_H_
#define QCAL_COMMON_QUANT_SHADOW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/quant/clip.h"
#include "common/stats/stats_set.h"

namespace qcal::quant {

// Decoder-layer indices (ascending) whose MLP output projection (TensorRole::kDown:
// down_proj, and fc2 / dense_4h_to_h / w2 in architectures that name it so) is not
// clipped on its input or its output: the set mllm's modeling files hard-code as
// shadowLayers. Names are mapped to (layer, role) through LinearModules(config);
// INVALID_ARGUMENT names a linear of `clips` that is not a module of the model. A
// layer whose down projection is absent from `clips` (no statistics) is not listed.
absl::StatusOr<std::vector<int64_t>> ShadowLayers(const ClipResult& clips,
                                                  const ModelConfig& config);

// Names of the linears not clipped on at least one side, in the order of `clips`
// (lm_head included when it is not clipped: it is part of mllm's counts).
std::vector<std::string> NotClippedLinears(const ClipResult& clips);

// The layer set as a C++ runtime pastes it into its modeling file: "{1, 2, 26}", "{}"
// when empty.
std::string FormatLayerSet(const std::vector<int64_t>& layers);

enum class Side { kInput, kOutput };
const char* SideName(Side side);  // "input" / "output"

// The outlier channels of one not-clipped tensor.
struct OutlierChannels {
  std::string name;  // the linear
  Side side = Side::kInput;
  float scale = 0;                // the tensor's scale (top_0_1 of the chosen mode)
  int64_t channels_total = 0;     // channels of the tensor
  std::vector<int64_t> channels;  // ascending: absmax_c > |scale|
};

// For every not-clipped side of every linear of `clips` (in that order, input before
// output): the channels c whose per-channel absmax max(|min_c|, |max_c|) exceeds
// |scale|, i.e. that hold values beyond the int8 range [-127, 127] * scale / 127 at
// the tensor's scale. The same rule serves both modes: in kMllm the scale is the
// signed top_0_1, and its magnitude bounds the range on both sides (a runtime that
// shadows a channel handles both signs). A tensor with no such channel is listed with
// an empty list. NOT_FOUND names a linear of `clips` that `set` lacks.
absl::StatusOr<std::vector<OutlierChannels>> FindOutlierChannels(const stats::StatsSet& set,
                                                                 const ClipResult& clips);

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_SHADOW_H_
