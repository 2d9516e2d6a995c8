// Clip decisions of mllm's threshold evaluation (get_clip_and_scale in
// tools/convertor/profiling_activation/utils/get_input_output_scales.py), computed
// from a StatsSet instead of mllm's act_scales_distribution.json.
//
// For a threshold t and every linear (in the set's order, which is forward order with
// lm_head last, as mllm iterates all_stat) and each side (input, output):
//   clipped     iff  top_0_1 * t > ori   (in double: ori and top_0_1 are float32 values
//                                          widened exactly, as mllm's JSON holds them)
//   scale       =    clipped ? ori : top_0_1
// A clipped tensor is quantized to int8 at scale `ori` and clamped to [-128, 127]; a
// not-clipped one is quantized at scale `top_0_1` and its values beyond the int8 range
// stay in higher precision (the shadow path). ori and top_0_1 are those of
// stats::Summarize in the chosen mode (kAbs on |x|, kMllm on signed values exactly as
// mllm). top_0_1 comes from the key sketch (relative error <= 0.39 %), so a decision may
// differ from an exact sort only when top_0_1 * t is within that band of ori.
//
// No libtorch. Thread-safe (pure functions).
#ifndef QCAL_COMMON_QUANT_CLIP_H_
#define QCAL_COMMON_QUANT_CLIP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"

namespace qcal::quant {

// mllm's threshold list (eval_quantize_threshold.py), the default sweep.
const std::vector<double>& DefaultThresholds();

// ori and top_0_1 of one tensor side.
struct TensorScales {
  float ori = 0;
  float top_0_1 = 0;
};

// Both sides of one linear.
struct LinearScales {
  std::string name;
  TensorScales input;
  TensorScales output;
};

// ori / top_0_1 of every linear of `set` in `mode`, in the set's order. Linears with no
// rows on either side are left out (mllm never sees them, see stats/outputs.h).
// Computed once and reused for every threshold.
std::vector<LinearScales> ComputeScales(const stats::StatsSet& set, stats::Mode mode);

// The exact comparison mllm makes: double(top_0_1) * threshold > double(ori).
bool IsClipped(const TensorScales& s, double threshold);

// What one linear gets at a threshold.
struct LinearClip {
  std::string name;
  bool clip_input = false;
  bool clip_output = false;
  float input_scale = 0;   // ori when clip_input, else top_0_1
  float output_scale = 0;  // ori when clip_output, else top_0_1
};

// get_clip_and_scale's outputs: per-linear decisions plus mllm's model_res_acc.json
// fields (everything but "res").
struct ClipResult {
  double threshold = 0;             // t01m_thre
  std::vector<LinearClip> linears;  // in the order of the scales given
  int64_t clip_input_num = 0;
  int64_t no_clip_input_num = 0;
  int64_t clip_output_num = 0;
  int64_t no_clip_output_num = 0;
  std::vector<std::string> no_clip_input_name;   // in linear order
  std::vector<std::string> no_clip_output_name;  // in linear order
};

// INVALID_ARGUMENT unless `threshold` is finite and > 0.
absl::Status ValidateThreshold(double threshold);

// Decisions for precomputed scales (e.g. exact ones, or ComputeScales' output).
// INVALID_ARGUMENT for a bad threshold.
absl::StatusOr<ClipResult> DecideClips(const std::vector<LinearScales>& scales,
                                       double threshold);

// ComputeScales then DecideClips. INVALID_ARGUMENT for a bad threshold.
absl::StatusOr<ClipResult> DecideClips(const stats::StatsSet& set, double threshold,
                                       stats::Mode mode = stats::Mode::kAbs);

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_CLIP_H_
