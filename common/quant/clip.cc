#include "common/quant/clip.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace qcal::quant {

const std::vector<double>& DefaultThresholds() {
  static const std::vector<double> kThresholds = {1,  2,  4,   8,   16,      24,
                                                  32, 64, 128, 152, 10000000};
  return kThresholds;
}

std::vector<LinearScales> ComputeScales(const stats::StatsSet& set, stats::Mode mode) {
  std::vector<LinearScales> out;
  out.reserve(set.size());
  for (const stats::LinearStats& linear : set) {
    absl::StatusOr<stats::Summary> in = stats::Summarize(linear.input, mode);
    absl::StatusOr<stats::Summary> o = stats::Summarize(linear.output, mode);
    if (!in.ok() || !o.ok()) continue;  // no rows: mllm never saw this linear
    out.push_back({linear.name, {in->ori, in->top_0_1}, {o->ori, o->top_0_1}});
  }
  return out;
}

bool IsClipped(const TensorScales& s, double threshold) {
  return static_cast<double>(s.top_0_1) * threshold > static_cast<double>(s.ori);
}

absl::Status ValidateThreshold(double threshold) {
  if (!std::isfinite(threshold) || !(threshold > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold must be a finite number > 0, got ", threshold));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClipResult> DecideClips(const std::vector<LinearScales>& scales,
                                       double threshold) {
  if (absl::Status s = ValidateThreshold(threshold); !s.ok()) return s;
  ClipResult r;
  r.threshold = threshold;
  r.linears.reserve(scales.size());
  for (const LinearScales& l : scales) {
    LinearClip c;
    c.name = l.name;
    c.clip_input = IsClipped(l.input, threshold);
    c.input_scale = c.clip_input ? l.input.ori : l.input.top_0_1;
    c.clip_output = IsClipped(l.output, threshold);
    c.output_scale = c.clip_output ? l.output.ori : l.output.top_0_1;
    if (c.clip_input) {
      ++r.clip_input_num;
    } else {
      ++r.no_clip_input_num;
      r.no_clip_input_name.push_back(l.name);
    }
    if (c.clip_output) {
      ++r.clip_output_num;
    } else {
      ++r.no_clip_output_num;
      r.no_clip_output_name.push_back(l.name);
    }
    r.linears.push_back(std::move(c));
  }
  return r;
}

absl::StatusOr<ClipResult> DecideClips(const stats::StatsSet& set, double threshold,
                                       stats::Mode mode) {
  if (absl::Status s = ValidateThreshold(threshold); !s.ok()) return s;
  return DecideClips(ComputeScales(set, mode), threshold);
}

}  // namespace qcal::quant
